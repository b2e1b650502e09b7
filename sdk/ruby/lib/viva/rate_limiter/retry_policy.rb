# frozen_string_literal: true

module Viva
  module RateLimiter
    # Retries of a call that never reached the sidecar: connection refused, or no connection
    # within the timeout. Nothing else is retried: a timeout while waiting for the answer (the
    # hits may already be charged) or any answer of the sidecar, a 503 included.
    #
    # +attempts+ counts every try (1: no retry). The pause before retry n (from 0) is drawn
    # uniformly from 0 to min(max_backoff, backoff * 2**n) seconds: full jitter, so that many
    # clients do not retry in step.
    class RetryPolicy
      attr_reader :attempts, :backoff, :max_backoff

      def initialize(attempts: 3, backoff: 0.05, max_backoff: 1.0)
        unless attempts.is_a?(Integer) && attempts >= 1
          raise ArgumentError, "attempts: #{attempts.inspect}; expected a whole number >= 1"
        end
        unless [backoff, max_backoff].all? { |v| v.is_a?(Numeric) && v >= 0 }
          raise ArgumentError, "backoff and max_backoff must be seconds >= 0"
        end

        @attempts = attempts
        @backoff = backoff.to_f
        @max_backoff = max_backoff.to_f
        freeze
      end

      # One attempt, no retry.
      def self.none
        new(attempts: 1, backoff: 0, max_backoff: 0)
      end

      # The pause in seconds before retry +n+ (0 for the first retry).
      def delay(n, random: Random)
        cap = [max_backoff, backoff * (2**n)].min
        cap.zero? ? 0.0 : random.rand * cap
      end

      def ==(other)
        other.is_a?(RetryPolicy) && [attempts, backoff, max_backoff] ==
          [other.attempts, other.backoff, other.max_backoff]
      end
      alias eql? ==

      def hash
        [attempts, backoff, max_backoff].hash
      end
    end
  end
end
