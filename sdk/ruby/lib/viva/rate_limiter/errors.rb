# frozen_string_literal: true

module Viva
  module RateLimiter
    # Every exception the client raises on purpose includes this module, so
    # `rescue Viva::RateLimiter::Error` catches them all:
    #
    #   Error (module)
    #   ├── InvalidRequest < ArgumentError   the request is malformed: refused before sending
    #   │                                    (empty identifier or namespace, negative hits) or
    #   │                                    by the sidecar (HTTP 400/413). #field names the
    #   │                                    culprit. Always raised: a bug, not an outage.
    #   ├── Unauthorized < StandardError     verify_key without a root key, or the sidecar
    #   │                                    refused it (401, 403 without keys:verify). Always
    #   │                                    raised: a wrong credential is not a valid key.
    #   ├── SidecarUnavailable < StandardError  no answer (connection refused after the retries,
    #   │                                    a timeout, a 503); raised only with
    #   │                                    failure_mode: :raise (verify_failure_mode for
    #   │                                    verify_key), else the failure mode answers.
    #   └── LeaseRefused < StandardError     Client#lease could not take a slot: every one is
    #                                        held, or the sidecar is out of reach and the
    #                                        failure mode is :closed; #result says which.
    #
    # No message ever holds an API key or the root key.
    module Error; end

    class InvalidRequest < ArgumentError
      include Error

      # The request field at fault, e.g. "identifier", "hits", "descriptors[0][1].key" (or nil).
      attr_reader :field

      def initialize(message, field = nil)
        super(message)
        @field = field
      end
    end

    class Unauthorized < StandardError
      include Error

      # The sidecar's status (401 or 403); nil when the client has no root key (nothing sent).
      attr_reader :status

      def initialize(message, status = nil)
        super(message)
        @status = status
      end
    end

    class SidecarUnavailable < StandardError
      include Error

      # The tries made, the first included.
      attr_reader :attempts

      def initialize(message, attempts)
        super(message)
        @attempts = attempts
      end
    end

    class LeaseRefused < StandardError
      include Error

      # The LeaseResult that refused: the sidecar's (active, limit, retry_after_seconds), or the
      # failure mode's (error).
      attr_reader :result

      def initialize(result)
        @result = result
        super(result.error ? "lease refused: the sidecar could not be asked (#{result.error})" : refused(result))
      end

      private

      def refused(result)
        text = "lease refused: #{result.active} of #{result.limit} held for #{result.policy.inspect}"
        result.retry_after_seconds ? "#{text}; a slot frees within #{result.retry_after_seconds} s" : text
      end
    end

    # No answer came, after +attempts+ tries: the failure mode decides. Internal to the client.
    class Unreached < StandardError
      attr_reader :attempts

      def initialize(message, attempts)
        super(message)
        @attempts = attempts
      end
    end
    private_constant :Unreached
  end
end
