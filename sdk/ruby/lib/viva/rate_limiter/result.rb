# frozen_string_literal: true

require "time"

module Viva
  module RateLimiter
    # The sidecar's answer for a request (and, when descriptors were sent, for each of them).
    #
    # +limit+ is nil when no limit applies (a namespace without rules, an identifier that
    # matches none, an unlimited one). +error+ is set when the sidecar could not be asked and
    # the failure mode answered instead: +allowed?+ is then true for :open, false for :closed.
    class Result
      FIELDS = %i[allowed limit remaining reset_at reset_after_seconds retry_after_seconds
                  window_seconds policy results error attempts].freeze

      attr_reader(*FIELDS)

      def initialize(allowed:, limit: nil, remaining: nil, reset_at: nil, reset_after_seconds: nil,
                     retry_after_seconds: nil, window_seconds: nil, policy: nil, results: [],
                     error: nil, attempts: 1)
        @allowed = allowed
        @limit = limit
        @remaining = remaining
        @reset_at = reset_at
        @reset_after_seconds = reset_after_seconds
        @retry_after_seconds = retry_after_seconds
        @window_seconds = window_seconds
        @policy = policy
        @results = results.freeze
        @error = error
        @attempts = attempts
        freeze
      end

      # A result from the sidecar's /v1/check or /v1/report JSON object (a parsed Hash).
      def self.from_json(doc, attempts: 1)
        unless doc.is_a?(Hash) && [true, false].include?(doc["allowed"])
          raise ArgumentError, "expected an object with a boolean 'allowed'"
        end

        new(allowed: doc["allowed"], limit: whole(doc, "limit"), remaining: whole(doc, "remaining"),
            reset_at: time(doc["reset_at"]), reset_after_seconds: whole(doc, "reset_after_seconds"),
            retry_after_seconds: whole(doc, "retry_after_seconds"),
            window_seconds: whole(doc, "window_seconds"), policy: text(doc, "policy"),
            results: Array(doc["results"]).map { |r| from_json(r) }, attempts: attempts)
      end

      # The answer of the failure mode (:open or :closed) when the sidecar is out of reach.
      def self.failure(mode, error, attempts)
        new(allowed: mode == :open, error: error, attempts: attempts)
      end

      def self.whole(doc, name)
        value = doc[name]
        return value if value.nil? || value.is_a?(Integer)

        raise ArgumentError, "'#{name}' is not a whole number: #{value.inspect}"
      end

      def self.text(doc, name)
        value = doc[name]
        return value if value.nil? || value.is_a?(String)

        raise ArgumentError, "'#{name}' is not a string: #{value.inspect}"
      end

      def self.time(value)
        return nil if value.nil?

        Time.iso8601(value).utc
      rescue ArgumentError, TypeError
        raise ArgumentError, "'reset_at' is not an RFC 3339 time: #{value.inspect}"
      end
      private_class_method :whole, :text, :time

      def allowed?
        @allowed
      end

      # The same answer, reached after +tries+ attempts.
      def with_attempts(tries)
        Result.new(**to_h, attempts: tries)
      end

      # The response headers the sidecar sends with this answer, as an ordered Hash; +families+
      # chooses among "ietf", "x" and "retry-after".
      def headers(families = Headers::FAMILIES)
        Headers.of(self, families)
      end

      def to_h
        FIELDS.to_h { |f| [f, public_send(f)] }
      end

      def inspect
        "#<#{self.class.name} #{to_h.reject { |k, v| k == :results && v.empty? }
                                   .map { |k, v| "#{k}=#{v.inspect}" }.join(' ')}>"
      end
    end
  end
end
