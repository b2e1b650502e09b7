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
    #   └── SidecarUnavailable < StandardError  no answer (connection refused after the retries,
    #                                        a timeout, a 503); raised only with
    #                                        failure_mode: :raise, else the failure mode answers.
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

    class SidecarUnavailable < StandardError
      include Error

      # The tries made, the first included.
      attr_reader :attempts

      def initialize(message, attempts)
        super(message)
        @attempts = attempts
      end
    end
  end
end
