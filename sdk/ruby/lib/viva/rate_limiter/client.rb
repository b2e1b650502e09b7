# frozen_string_literal: true

require "json"
require "net/http"
require "socket"

module Viva
  module RateLimiter
    # Client of the sidecar's REST API (POST /v1/check, POST /v1/report); thread-safe, keep one
    # per process: it keeps connections open.
    #
    #   limiter = Viva::RateLimiter::Client.new("http://localhost:8080")
    #   if limiter.allow?("user_123", "api_requests")
    #     ...
    #   end
    #
    # Calls that never reached the sidecar (connection refused, no connection in time) are
    # retried per the RetryPolicy; when the attempts run out, the failure mode answers: :open
    # (the default) allows, :closed refuses, both with Result#error set; :raise raises
    # SidecarUnavailable. Nothing else is retried: a timeout waiting for the answer (the hits may
    # be charged), a 503 (the sidecar's store is down) or any other answer. A malformed request
    # always raises InvalidRequest.
    class Client
      DEFAULT_ENDPOINT = "http://127.0.0.1:8080"
      DEFAULT_TIMEOUT = 0.5 # seconds, per attempt: a rate-limit check must never hold a request
      FAILURE_MODES = %i[open closed raise].freeze

      # Failures of the connect phase: the request was never sent, so it cannot have been
      # counted. (Net::HTTP keeps the class of these when it adds the address to the message.)
      CONNECT_ERRORS = [Errno::ECONNREFUSED, Errno::EHOSTUNREACH, Errno::ENETUNREACH,
                        Errno::EADDRNOTAVAIL, Net::OpenTimeout, SocketError,
                        ConnectionPool::Timeout].freeze
      # Everything else that can go wrong on the wire: not retried, the failure mode answers.
      WIRE_ERRORS = [Timeout::Error, IOError, SystemCallError, Net::HTTPBadResponse,
                     Net::ProtocolError, OpenSSL::SSL::SSLError].freeze

      attr_reader :endpoint, :timeout, :retry_policy, :failure_mode

      # +endpoint+: the sidecar's HTTP port, "http://localhost:8080" or "localhost:8080".
      # +timeout+: seconds per attempt (connect, send, and wait for the answer).
      # +retry_policy+: a RetryPolicy. +failure_mode+: :open, :closed or :raise.
      # +headers+: sent with every call. +pool_size+: connections kept open at most.
      def initialize(endpoint = DEFAULT_ENDPOINT, timeout: DEFAULT_TIMEOUT,
                     retry_policy: RetryPolicy.new, failure_mode: :open, headers: {}, pool_size: 10)
        @endpoint = Endpoint.parse(endpoint)
        @timeout = positive(timeout, "timeout")
        unless retry_policy.is_a?(RetryPolicy)
          raise ArgumentError, "retry_policy: expected a RetryPolicy, got #{retry_policy.inspect}"
        end

        @retry_policy = retry_policy
        @failure_mode = mode(failure_mode)
        @headers = { "Content-Type" => "application/json", "Accept" => "application/json",
                     "User-Agent" => "viva-ratelimit-ruby/#{VERSION}" }.merge(headers).freeze
        @pool = ConnectionPool.new(@endpoint, size: positive(pool_size, "pool_size"),
                                              timeout: @timeout, wait: @timeout)
      end

      # Charge +hits+ to +identifier+ in +namespace+; true when allowed.
      def allow?(identifier, namespace, hits: 1)
        check(identifier, namespace, hits: hits).allowed?
      end

      # Charge and decide (hits: 0 peeks), with the whole Result. With +descriptors+ (and a nil
      # identifier), several descriptors at once, one Result each in #results: each descriptor
      # is a Hash ({"route" => "/cart", "method" => "POST"}) or a list of [key, value] pairs.
      def check(identifier, namespace, hits: 1, descriptors: nil)
        post("/v1/check", body(identifier, namespace, hits, descriptors))
      end

      # Charge usage known only afterwards (tokens, bytes): always counted, even past the limit;
      # the Result says where the budget stands.
      def report(identifier, namespace, hits: 1, descriptors: nil)
        post("/v1/report", body(identifier, namespace, hits, descriptors))
      end

      # Where the budget stands, without charging.
      def peek(identifier, namespace, descriptors: nil)
        report(identifier, namespace, hits: 0, descriptors: descriptors)
      end

      # Closes the idle connections (a later call opens new ones).
      def close
        @pool.close
      end

      private

      def post(path, json)
        request_path = "#{@endpoint.path}#{path}"
        attempt = 0
        loop do
          attempt += 1
          outcome = try_once(request_path, json)
          return outcome.with_attempts(attempt) if outcome.is_a?(Result)

          retryable, error = outcome
          return give_up(error, attempt) if !retryable || attempt >= @retry_policy.attempts

          sleep(@retry_policy.delay(attempt - 1))
        end
      end

      # A Result, or [retryable, error message].
      def try_once(path, json)
        response = @pool.with do |http|
          request = Net::HTTP::Post.new(path, @headers)
          request.body = json
          http.request(request)
        end
        interpret(response)
      rescue *CONNECT_ERRORS => e
        [true, describe(e)]
      rescue *WIRE_ERRORS => e
        [false, describe(e)]
      end

      def interpret(response)
        status = response.code.to_i
        return parse_result(response.body) if status == 200

        doc = begin
          JSON.parse(response.body.to_s)
        rescue JSON::ParserError
          nil
        end
        raise invalid(doc, status) if [400, 413].include?(status)

        detail = doc.is_a?(Hash) && doc["error"].is_a?(String) ? doc["error"] : response.body.to_s
        [false, "HTTP #{status} from the sidecar: #{detail[0, 200]}"]
      end

      def parse_result(text)
        Result.from_json(JSON.parse(text.to_s))
      rescue JSON::ParserError, ArgumentError => e
        [false, "the sidecar's answer is not a check result: #{e.message}"]
      end

      def invalid(doc, status)
        if doc.is_a?(Hash) && doc["error"].is_a?(String)
          InvalidRequest.new(doc["error"], doc["field"].is_a?(String) ? doc["field"] : nil)
        else
          InvalidRequest.new("the sidecar refused the request with HTTP #{status}")
        end
      end

      def give_up(error, attempts)
        raise SidecarUnavailable.new(error, attempts) if @failure_mode == :raise

        Result.failure(@failure_mode, error, attempts)
      end

      def body(identifier, namespace, hits, descriptors)
        text!(namespace, "namespace")
        unless hits.is_a?(Integer) && hits >= 0
          raise InvalidRequest.new("hits must be a whole number >= 0, not #{hits.inspect}", "hits")
        end

        doc = { "namespace" => namespace }
        if descriptors.nil?
          doc["identifier"] = text!(identifier, "identifier")
        else
          unless identifier.nil?
            raise InvalidRequest.new("pass either an identifier or descriptors, not both",
                                     "descriptors")
          end
          doc["descriptors"] = descriptor_list(descriptors)
        end
        doc["hits"] = hits
        JSON.generate(doc)
      end

      # Only the shape is checked here; the sidecar checks the text of every entry and names its
      # place (descriptors[0][1].key).
      def descriptor_list(descriptors)
        unless descriptors.is_a?(Array) && !descriptors.empty?
          raise InvalidRequest.new("descriptors must be a non-empty list", "descriptors")
        end

        descriptors.map do |d|
          d.to_a.map { |(key, value)| { "key" => key.to_s, "value" => value.to_s } }
        end
      end

      def text!(value, field)
        return value if value.is_a?(String) && !value.empty?

        raise InvalidRequest.new("#{field} must be a non-empty string", field)
      end

      def positive(value, name)
        return value if value.is_a?(Numeric) && value.positive?

        raise ArgumentError, "#{name}: #{value.inspect}; expected a number > 0"
      end

      def mode(value)
        return value.to_sym if FAILURE_MODES.include?(value.to_s.to_sym)

        raise ArgumentError, "failure_mode: #{value.inspect}; expected one of " \
                             "#{FAILURE_MODES.join(', ')}"
      end

      def describe(error)
        message = error.message.to_s
        message.empty? || message == error.class.name ? error.class.name : "#{error.class.name}: #{message}"
      end
    end
  end
end
