# frozen_string_literal: true

require "time"

module Viva
  module RateLimiter
    # The sidecar's answer to an acquire or a renewal of a lease (and, when the lease was asked
    # for descriptors, its answer for each of them in #results).
    #
    # +allowed?+: the lease holds its slots (a renewal: still holds them; false once the lease
    # is gone). +lease_id+ renews and releases it (nil when nothing is held: refused, no
    # concurrency limit applies, or the failure mode answered). +active+ and +limit+: the leases
    # held and the rule's max. +expires_at+ (the sidecar's clock) and +ttl_seconds+: until when,
    # and for how long, the lease holds unless renewed. +retry_after_seconds+, when refused: the
    # longest wait for a holder's lease to expire (a release comes sooner). +error+ and
    # +attempts+: the sidecar could not be asked and the failure mode answered.
    class LeaseResult
      FIELDS = %i[allowed lease_id active limit expires_at ttl_seconds retry_after_seconds policy
                  results error attempts].freeze

      attr_reader(*FIELDS)

      def initialize(allowed:, lease_id: nil, active: nil, limit: nil, expires_at: nil,
                     ttl_seconds: nil, retry_after_seconds: nil, policy: nil, results: [],
                     error: nil, attempts: 1)
        @allowed = allowed
        @lease_id = lease_id
        @active = active
        @limit = limit
        @expires_at = expires_at
        @ttl_seconds = ttl_seconds
        @retry_after_seconds = retry_after_seconds
        @policy = policy
        @results = results.freeze
        @error = error
        @attempts = attempts
        freeze
      end

      # A lease from the sidecar's JSON object (a parsed Hash); ArgumentError when it is not one.
      def self.from_json(doc, attempts: 1)
        unless doc.is_a?(Hash) && [true, false].include?(doc["allowed"])
          raise ArgumentError, "expected an object with a boolean 'allowed'"
        end

        new(allowed: doc["allowed"], lease_id: doc["lease_id"], active: doc["active"],
            limit: doc["limit"], expires_at: time(doc["expires_at"]), ttl_seconds: doc["ttl_seconds"],
            retry_after_seconds: doc["retry_after_seconds"], policy: doc["policy"],
            results: Array(doc["results"]).map { |r| from_json(r) }, attempts: attempts)
      end

      # The failure mode's answer (:open allows holding nothing, :closed refuses).
      def self.failure(mode, error, attempts)
        new(allowed: mode == :open, error: error, attempts: attempts)
      end

      def self.time(value)
        value.nil? ? nil : Time.iso8601(value).utc
      rescue ArgumentError, TypeError
        raise ArgumentError, "'expires_at' is not an RFC 3339 time: #{value.inspect}"
      end
      private_class_method :time

      def allowed?
        @allowed
      end

      def to_h
        FIELDS.to_h { |f| [f, public_send(f)] }
      end

      def inspect
        "#<#{self.class.name} #{to_h.reject { |k, v| k == :results && v.empty? }
                                   .map { |k, v| "#{k}=#{v.inspect}" }.join(' ')}>"
      end
    end

    # A release: +released?+ when the sidecar freed the lease's slots (false when the lease was
    # gone already or, with +error+, when the sidecar could not be asked: the lease then expires
    # with its time to live); +active+ and +limit+ after it.
    class ReleaseResult
      attr_reader :active, :limit, :error, :attempts

      def initialize(released:, active: nil, limit: nil, error: nil, attempts: 1)
        @released = released
        @active = active
        @limit = limit
        @error = error
        @attempts = attempts
        freeze
      end

      def self.from_json(doc, attempts: 1)
        unless doc.is_a?(Hash) && [true, false].include?(doc["released"])
          raise ArgumentError, "expected an object with a boolean 'released'"
        end

        new(released: doc["released"], active: doc["active"], limit: doc["limit"], attempts: attempts)
      end

      def released?
        @released
      end

      def inspect
        "#<#{self.class.name} released=#{@released} active=#{@active.inspect} limit=#{@limit.inspect}" \
          "#{@error ? " error=#{@error.inspect}" : ''} attempts=#{@attempts}>"
      end
    end
  end
end
