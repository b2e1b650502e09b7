# frozen_string_literal: true

require "time"

module Viva
  module RateLimiter
    # The sidecar's verdict on an API key: a closed list of codes (the JSON "code").
    module VerifyCode
      VALID = "VALID"
      NOT_FOUND = "NOT_FOUND"           # malformed (bad checksum), or no such key
      EXPIRED = "EXPIRED"               # past its expiry (a rotated key after its grace period)
      REVOKED = "REVOKED"               # revoked, or its customer deleted
      DISABLED = "DISABLED"             # disabled, or its plan is gone
      FORBIDDEN = "FORBIDDEN"           # a required feature is not in the plan; nothing charged
      RATE_LIMITED = "RATE_LIMITED"     # a rate limit of the key is used up
      QUOTA_EXCEEDED = "QUOTA_EXCEEDED" # a calendar quota of the key is used up
      ALL = [VALID, NOT_FOUND, EXPIRED, REVOKED, DISABLED, FORBIDDEN, RATE_LIMITED,
             QUOTA_EXCEEDED].freeze
    end

    # One limit of the key, as the verification left it.
    VerifiedLimit = Struct.new(:name, :limit, :remaining, :reset_at, :exceeded, keyword_init: true) do
      def exceeded?
        exceeded
      end
    end

    # The verdict on a key; it never holds the key itself.
    #
    # +code+ (a VerifyCode) is nil only when the sidecar could not answer: +error+ then says why,
    # after +attempts+ tries, and +valid?+ is the verify failure mode's answer (false unless the
    # client has verify_failure_mode: :open). +key_id+, +customer_id+ and +plan+ are nil for
    # NOT_FOUND; +remaining+ and +reset_at+ (the tightest limit's) are nil when no limit was
    # checked (the key was refused before, or FORBIDDEN).
    class KeyVerification
      FIELDS = %i[valid code key_id customer_id plan features remaining reset_at limits error
                  attempts].freeze

      attr_reader(*FIELDS)

      def initialize(valid:, code: nil, key_id: nil, customer_id: nil, plan: nil, features: [],
                     remaining: nil, reset_at: nil, limits: [], error: nil, attempts: 1)
        @valid = valid
        @code = code
        @key_id = key_id
        @customer_id = customer_id
        @plan = plan
        @features = features.freeze
        @remaining = remaining
        @reset_at = reset_at
        @limits = limits.freeze
        @error = error
        @attempts = attempts
        freeze
      end

      # The verdict from the sidecar's /v1/keys/verify JSON (a parsed Hash); ArgumentError when
      # it is not one.
      def self.from_json(doc)
        unless doc.is_a?(Hash) && [true, false].include?(doc["valid"]) && VerifyCode::ALL.include?(doc["code"])
          raise ArgumentError, "expected an object with a boolean 'valid' and a known 'code'"
        end

        new(valid: doc["valid"], code: doc["code"], key_id: doc["key_id"],
            customer_id: doc["customer_id"], plan: doc["plan"],
            features: Array(doc["features"]).map(&:to_s), remaining: doc["remaining"],
            reset_at: time(doc["reset_at"]), limits: Array(doc["limits"]).map { |l| limit(l) })
      end

      # The verify failure mode's answer (:open or :closed) when the sidecar is out of reach.
      def self.failure(mode, error, attempts)
        new(valid: mode == :open, error: error, attempts: attempts)
      end

      def self.limit(doc)
        unless doc.is_a?(Hash) && doc["name"].is_a?(String) && doc["limit"].is_a?(Integer) &&
               doc["remaining"].is_a?(Integer)
          raise ArgumentError, "a limit without name, limit or remaining"
        end

        VerifiedLimit.new(name: doc["name"], limit: doc["limit"], remaining: doc["remaining"],
                          reset_at: time(doc["reset_at"]), exceeded: doc["exceeded"] == true)
      end

      def self.time(value)
        return nil if value.nil?

        Time.iso8601(value).utc
      rescue ArgumentError, TypeError
        raise ArgumentError, "'reset_at' is not an RFC 3339 time"
      end
      private_class_method :limit, :time

      def valid?
        @valid
      end

      def to_h
        FIELDS.to_h { |f| [f, public_send(f)] }
      end

      def inspect
        "#<#{self.class.name} #{to_h.map { |k, v| "#{k}=#{v.inspect}" }.join(' ')}>"
      end
    end
  end
end
