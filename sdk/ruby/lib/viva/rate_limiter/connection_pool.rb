# frozen_string_literal: true

require "net/http"

module Viva
  module RateLimiter
    # Keep-alive Net::HTTP connections shared by threads (Net::HTTP itself is not thread-safe):
    # a thread takes an idle connection or opens one, up to +size+; past that it waits for one
    # to come back, at most +wait+ seconds.
    class ConnectionPool
      # No connection became free in time: nothing was sent, so the call may be retried.
      class Timeout < StandardError; end

      def initialize(uri, size:, timeout:, wait:)
        @uri = uri
        @size = size
        @timeout = timeout
        @wait = wait
        @idle = []
        @open = 0
        @lock = Mutex.new
        @returned = ConditionVariable.new
      end

      # Yields a started connection; it goes back to the pool unless the block raised, in which
      # case it is closed (its state after a timeout or a broken answer is unknown).
      def with
        http = checkout
        begin
          result = yield http
        rescue StandardError
          discard(http)
          raise
        end
        checkin(http)
        result
      end

      def close
        @lock.synchronize do
          @idle.each { |http| finish(http) }
          @open -= @idle.size
          @idle.clear
        end
      end

      private

      def checkout
        deadline = monotonic + @wait
        @lock.synchronize do
          loop do
            return @idle.pop unless @idle.empty?
            break if @open < @size

            left = deadline - monotonic
            raise Timeout, "no free connection within #{@wait}s (pool of #{@size})" if left <= 0

            @returned.wait(@lock, left)
          end
          @open += 1
        end
        connect
      end

      def connect
        http = Net::HTTP.new(@uri.host, @uri.port)
        http.use_ssl = @uri.scheme == "https"
        http.open_timeout = @timeout
        http.read_timeout = @timeout
        http.write_timeout = @timeout
        # Reuse an idle connection for up to 30 s, well under the sidecar's 75 s keep-alive; a
        # connection the server closed meanwhile is noticed before sending and reopened.
        http.keep_alive_timeout = 30
        http.max_retries = 0 # retries are ours, and only where they cannot charge twice
        http.start
      rescue StandardError
        @lock.synchronize do
          @open -= 1
          @returned.signal
        end
        raise
      end

      def checkin(http)
        @lock.synchronize do
          @idle.push(http)
          @returned.signal
        end
      end

      def discard(http)
        finish(http)
        @lock.synchronize do
          @open -= 1
          @returned.signal
        end
      end

      def finish(http)
        http.finish if http.started?
      rescue IOError
        nil
      end

      def monotonic
        Process.clock_gettime(Process::CLOCK_MONOTONIC)
      end
    end
  end
end
