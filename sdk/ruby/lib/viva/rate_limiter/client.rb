# frozen_string_literal: true

require "json"
require "net/http"
require "socket"

module Viva
  module RateLimiter
    # Client of the sidecar's REST API (POST /v1/check, POST /v1/report, and leases of a
    # concurrency limit: LeaseCalls); thread-safe, keep one per process: it keeps connections
    # open.
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
    #
    # In full mode, #verify_key authenticates an API key and charges its plan's limits in one
    # call; it needs +root_key+, and has its own failure mode (+verify_failure_mode+, :closed by
    # default: a key that cannot be verified is not valid).
    class Client
      include LeaseCalls

      DEFAULT_ENDPOINT = "http://127.0.0.1:8080"
      VERIFY_PATH = "/v1/keys/verify"
      MAX_CLIENT_ADDRESS = 128 # the longest client_address the sidecar accepts
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

      attr_reader :endpoint, :timeout, :retry_policy, :failure_mode, :verify_failure_mode

      # +endpoint+: the sidecar's HTTP port, "http://localhost:8080" or "localhost:8080".
      # +timeout+: seconds per attempt (connect, send, and wait for the answer).
      # +retry_policy+: a RetryPolicy. +failure_mode+: :open, :closed or :raise.
      # +headers+: sent with every call. +pool_size+: connections kept open at most.
      # +root_key+: full mode's root key (scope keys:verify), sent by #verify_key only.
      # +verify_failure_mode+: #verify_key's :closed (the default), :open or :raise.
      def initialize(endpoint = DEFAULT_ENDPOINT, timeout: DEFAULT_TIMEOUT,
                     retry_policy: RetryPolicy.new, failure_mode: :open, headers: {}, pool_size: 10,
                     root_key: nil, verify_failure_mode: :closed)
        @endpoint = Endpoint.parse(endpoint)
        @timeout = positive(timeout, "timeout")
        unless retry_policy.is_a?(RetryPolicy)
          raise ArgumentError, "retry_policy: expected a RetryPolicy, got #{retry_policy.inspect}"
        end

        @retry_policy = retry_policy
        @failure_mode = mode(failure_mode, "failure_mode")
        @verify_failure_mode = mode(verify_failure_mode, "verify_failure_mode")
        @root_key = check_root_key(root_key)
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

      # Full mode: authenticate +key+ and charge +cost+ (0: nothing) to its plan's limits, or to
      # the +limits+ named, in one call; +features+ the plan must include. A KeyVerification: the
      # verdict is in #code. Raises InvalidRequest for a malformed request and Unauthorized for a
      # missing or refused root key, whatever the failure mode.
      #
      # +client_address+: who presented the key, its address or a stable id (1 to 128 printable
      # ASCII characters, no spaces), e.g. Rack's request.ip. The sidecar counts failed
      # verifications per root key and client address, and past its budget answers RATE_LIMITED
      # without a lookup: with it, one client guessing keys is refused alone; without it, every
      # client of the application shares the root key's budget.
      def verify_key(key, cost: 1, limits: nil, features: nil, client_address: nil)
        json = verify_body(key, cost, limits, features, client_address)
        unless @root_key
          raise Unauthorized, "verify_key needs a root key with the scope keys:verify: " \
                              "Client.new(..., root_key: ...)"
        end

        response, attempts = exchange(VERIFY_PATH, json, @headers.merge("Authorization" => "Bearer #{@root_key}"))
        verdict(response, attempts)
      rescue Unreached => e
        give_up_verify(e.message, e.attempts)
      end

      # Closes the idle connections (a later call opens new ones).
      def close
        @pool.close
      end

      # Never shows the root key (nor the headers, which may hold credentials).
      def inspect
        "#<#{self.class.name} #{@endpoint} timeout=#{@timeout} failure_mode=#{@failure_mode} " \
          "verify_failure_mode=#{@verify_failure_mode}#{@root_key ? ' root_key=<set>' : ''}>"
      end

      private

      def post(path, json)
        response, attempts = exchange(path, json, @headers)
        outcome = interpret(response)
        outcome.is_a?(Result) ? outcome.with_attempts(attempts) : give_up(outcome, attempts)
      rescue Unreached => e
        give_up(e.message, e.attempts)
      end

      # The sidecar's answer and the tries it took, retrying what never reached it; Unreached
      # when no answer came. +json+ nil: no body.
      def exchange(path, json, headers, method: :post)
        attempt = 0
        loop do
          attempt += 1
          begin
            return [send_once(method, "#{@endpoint.path}#{path}", json, headers), attempt]
          rescue *CONNECT_ERRORS => e
            raise Unreached.new(describe(e), attempt) if attempt >= @retry_policy.attempts
          rescue *WIRE_ERRORS => e
            raise Unreached.new(describe(e), attempt)
          end
          sleep(@retry_policy.delay(attempt - 1))
        end
      end

      REQUESTS = { post: Net::HTTP::Post, delete: Net::HTTP::Delete }.freeze
      private_constant :REQUESTS

      def send_once(method, path, json, headers)
        @pool.with do |http|
          request = REQUESTS.fetch(method).new(path, headers)
          request.body = json unless json.nil?
          http.request(request)
        end
      end

      # A Result, or why the answer is not one.
      def interpret(response)
        status = response.code.to_i
        return parse_result(response.body) if status == 200

        doc = json_or_nil(response.body)
        raise invalid(doc, status) if [400, 413].include?(status)

        detail = doc.is_a?(Hash) && doc["error"].is_a?(String) ? doc["error"] : response.body.to_s
        "HTTP #{status} from the sidecar: #{detail[0, 200]}"
      end

      def parse_result(text)
        Result.from_json(JSON.parse(text.to_s))
      rescue JSON::ParserError, ArgumentError => e
        "the sidecar's answer is not a check result: #{e.message}"
      end

      def verdict(response, attempts)
        status = response.code.to_i
        doc = json_or_nil(response.body)
        if status == 200
          begin
            return KeyVerification.from_json(doc)
          rescue ArgumentError => e
            return give_up_verify("the sidecar's answer is not a verification: #{e.message}", attempts)
          end
        end
        # Only the sidecar's own error text, never a body it did not write: something else on its
        # port might echo the request, and the request holds the key.
        own = doc.is_a?(Hash) && doc["error"].is_a?(String) ? ": #{doc['error'][0, 200]}" : ""
        raise Unauthorized.new("HTTP #{status} from the sidecar#{own}", status) if [401, 403].include?(status)
        raise invalid(doc, status) if [400, 413].include?(status)

        give_up_verify("HTTP #{status} from the sidecar#{own}", attempts)
      end

      def json_or_nil(text)
        JSON.parse(text.to_s)
      rescue JSON::ParserError
        nil
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

      def give_up_verify(error, attempts)
        raise SidecarUnavailable.new(error, attempts) if @verify_failure_mode == :raise

        KeyVerification.failure(@verify_failure_mode, error, attempts)
      end

      # The JSON body of /v1/keys/verify; InvalidRequest naming the field, never the key.
      def verify_body(key, cost, limits, features, client_address)
        text!(key, "key")
        unless cost.is_a?(Integer) && cost >= 0
          raise InvalidRequest.new("cost must be a whole number >= 0, not #{cost.inspect}", "cost")
        end

        doc = { "key" => key, "cost" => cost }
        { "limits" => limits, "features" => features }.each do |field, names|
          next if names.nil?
          unless names.is_a?(Array) && names.all?(String)
            raise InvalidRequest.new("#{field} must be a list of names", field)
          end

          doc[field] = names
        end
        doc["client_address"] = check_client_address(client_address) unless client_address.nil?
        JSON.generate(doc)
      end

      # +address+ as the sidecar accepts it; InvalidRequest naming client_address otherwise.
      def check_client_address(address)
        problem =
          if !address.is_a?(String) then "is not a string (#{address.class})"
          elsif address.empty? then "is empty"
          elsif !address.each_byte.all? { |b| b.between?(0x21, 0x7e) }
            "has a space, a control character or a character outside ASCII"
          elsif address.bytesize > MAX_CLIENT_ADDRESS then "has #{address.bytesize} characters"
          end
        return address if problem.nil?

        raise InvalidRequest.new("client_address #{problem}; expected 1 to #{MAX_CLIENT_ADDRESS} " \
                                 "printable ASCII characters without spaces", "client_address")
      end

      def check_root_key(value)
        return nil if value.nil?
        return value if value.is_a?(String) && !value.strip.empty?

        raise ArgumentError, "root_key: expected a non-empty string, or nil"
      end

      def body(identifier, namespace, hits, descriptors)
        JSON.generate(check_doc(identifier, namespace, hits, descriptors))
      end

      # The fields of a check's body, in order: namespace, identifier or descriptors, hits.
      def check_doc(identifier, namespace, hits, descriptors)
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
        doc
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

      def mode(value, name)
        return value.to_sym if FAILURE_MODES.include?(value.to_s.to_sym)

        raise ArgumentError, "#{name}: #{value.inspect}; expected one of #{FAILURE_MODES.join(', ')}"
      end

      def describe(error)
        message = error.message.to_s
        message.empty? || message == error.class.name ? error.class.name : "#{error.class.name}: #{message}"
      end
    end
  end
end
