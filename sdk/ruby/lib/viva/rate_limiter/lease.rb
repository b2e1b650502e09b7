# frozen_string_literal: true

module Viva
  module RateLimiter
    # A slot of a concurrency limit (a rule with algorithm: concurrency), taken by Client#lease:
    #
    #   limiter.lease("user_1", "ws") do |lease|   # LeaseRefused when every slot is held
    #     serve_the_websocket                      # renewed in the background meanwhile
    #   end                                        # released on the way out, whatever happens
    #
    # While it is held a thread renews it every third of its time to live (the sidecar says how
    # long that is), so it outlives any number of them; a holder that dies stops renewing, and
    # its slot frees when the lease expires. If the sidecar answers that the lease is gone
    # (expired during a long pause, say), #lost? turns true and +on_lost+ is called; if the
    # sidecar cannot be reached, renewals keep being tried, and unless the failure mode is :open
    # the lease counts as lost once its time to live has passed without one getting through.
    class Lease
      # The shortest interval between two renewals, in seconds.
      MIN_RENEW_EVERY = 0.05

      def initialize(client, identifier, namespace, ttl: nil, descriptors: nil, renew_every: nil,
                     on_lost: nil)
        @client = client
        @ask = [identifier, namespace, { ttl: ttl, descriptors: descriptors }]
        @renew_every = renew_every
        @on_lost = on_lost
        @result = nil
        @lost = false
        @released = false
        @lock = Mutex.new
        @wake = ConditionVariable.new
        @thread = nil
      end

      # Take the slot (LeaseRefused when refused) and start renewing it; returns self.
      def acquire
        identifier, namespace, options = @ask
        result = @client.acquire_lease(identifier, namespace, **options)
        raise LeaseRefused, result unless result.allowed?

        @result = result
        @confirmed = monotonic
        @thread = Thread.new { renew_loop } if interval
        self
      end

      # The acquire's answer, then the last renewal's that confirmed the lease.
      def result
        @lock.synchronize { @result }
      end

      # The lease's id; nil when nothing is held (no concurrency limit applies, or the failure
      # mode :open let the caller through: result.error then says why).
      def id
        result&.lease_id
      end

      # Whether a slot is held now: false when nothing was taken, once lost, and after release.
      def held?
        @lock.synchronize { !@result&.lease_id.nil? && !@lost && !@released }
      end

      # The lease no longer holds its slots (see the class comment); renewals have stopped.
      def lost?
        @lock.synchronize { @lost }
      end

      # Renew now (the thread does anyway); a lease that holds nothing answers its result as is.
      def renew
        return result unless held?

        answer = @client.renew_lease(id)
        take(answer)
        answer
      end

      # Stop renewing and free the slot, once: a lease that holds nothing, is lost or was
      # released sends nothing. Never raises for an outage: the ReleaseResult's error says why,
      # and the lease then expires with its time to live.
      def release
        send = held?
        stop_renewing
        return ReleaseResult.new(released: false, attempts: 0) unless send

        @client.release_lease(id)
      rescue SidecarUnavailable => e
        ReleaseResult.new(released: false, error: e.message, attempts: e.attempts)
      end

      def inspect
        "#<#{self.class.name} id=#{id.inspect} held=#{held?} lost=#{lost?} " \
          "expires_at=#{result&.expires_at.inspect}>"
      end

      private

      def stop_renewing
        @lock.synchronize do
          @released = true
          @wake.broadcast
        end
        @thread.join if @thread && @thread != Thread.current
      end

      def renew_loop
        while (every = interval)
          @lock.synchronize { @wake.wait(@lock, every) unless @released }
          break if @lock.synchronize { @released }

          answer = begin
            @client.renew_lease(id)
          rescue Error => e # :raise, or a mistake: an outage for the lease
            LeaseResult.new(allowed: false, error: e.message)
          end
          break unless take(answer)
        end
      end

      # Take a renewal's answer in; false once the lease is lost or released (stop renewing).
      def take(answer)
        @lock.synchronize do
          return false if @lost || @released

          if answer.allowed? && answer.error.nil?
            @result = answer
            @confirmed = monotonic
            return true
          end
          gone = answer.error.nil? # the sidecar said so; an error is an outage
          ttl = @result.ttl_seconds
          unconfirmed = @client.failure_mode != :open && ttl && monotonic - @confirmed > ttl
          return true unless gone || unconfirmed

          @lost = true
        end
        @on_lost&.call(self)
        false
      end

      # Seconds between renewals; nil when nothing is held or its time to live is unknown.
      def interval
        ttl = result&.ttl_seconds
        return nil if id.nil? || ttl.nil? || ttl <= 0

        [@renew_every || ttl / 3.0, MIN_RENEW_EVERY].max
      end

      def monotonic
        Process.clock_gettime(Process::CLOCK_MONOTONIC)
      end
    end
  end
end
