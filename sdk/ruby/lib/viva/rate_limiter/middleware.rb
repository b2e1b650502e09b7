# frozen_string_literal: true

require "json"

module Viva
  module RateLimiter
    # Rack middleware (Rails, Sinatra, Hanami, any Rack app): one check per request.
    #
    #   use Viva::RateLimiter::Middleware,
    #       namespace: "api_requests",
    #       identifier: ->(env) { env["HTTP_X_API_KEY"] || env["REMOTE_ADDR"] }
    #
    # - allowed: the app is called and the rate-limit headers are added to its response;
    # - refused: 429 with Retry-After, the rate-limit headers and
    #   {"error": "rate limit exceeded", "retry_after_seconds": N};
    # - the sidecar out of reach with failure_mode: :closed: 503 {"error": "rate limiter
    #   unavailable"} (with :open, the default, the app is called without rate-limit headers).
    #
    # Options: +client+ (a Client; else one is built from +endpoint+, +timeout+,
    # +retry_policy+, +failure_mode+), +namespace+ (a String or ->(env)), +identifier+
    # (->(env), default REMOTE_ADDR; nil or "" lets the request through unchecked), +hits+
    # (per request, default 1), +headers+ (families: "ietf", "x", "retry-after").
    # Header names are written in lower case, as Rack 3 requires (HTTP does not care).
    class Middleware
      CLIENT_OPTIONS = %i[endpoint timeout retry_policy failure_mode].freeze
      OPTIONS = (%i[client namespace identifier hits headers] + CLIENT_OPTIONS).freeze
      REMOTE_ADDR = ->(env) { env["REMOTE_ADDR"] }

      def initialize(app, **options)
        unknown = options.keys - OPTIONS
        unless unknown.empty?
          raise ArgumentError, "#{self.class.name}: unknown option #{unknown.first.inspect}; " \
                               "expected #{OPTIONS.join(', ')}"
        end

        @app = app
        @client = options[:client] || build_client(options)
        @namespace = namespace_option(options[:namespace])
        @identifier = options.fetch(:identifier, REMOTE_ADDR)
        @hits = hits_option(options.fetch(:hits, 1))
        @families = Headers.families(options.fetch(:headers, Headers::FAMILIES))
      end

      def call(env)
        identifier = @identifier.call(env)
        identifier = identifier.to_s unless identifier.nil?
        return @app.call(env) if identifier.nil? || identifier.empty?

        namespace = @namespace.respond_to?(:call) ? @namespace.call(env) : @namespace
        result = @client.check(identifier, namespace, hits: @hits)
        return respond_allowed(env, result) if result.allowed?
        return unavailable unless result.error.nil?

        refused(result)
      end

      private

      def respond_allowed(env, result)
        status, headers, body = @app.call(env)
        headers = headers.dup # the app's may be frozen
        rate_headers(result).each { |name, value| headers[name] = value }
        [status, headers, body]
      end

      def refused(result)
        body = JSON.generate("error" => "rate limit exceeded",
                             "retry_after_seconds" => result.retry_after_seconds || 1)
        [429, rate_headers(result).merge(json_headers(body)), [body]]
      end

      # failure_mode: :closed and the sidecar out of reach: not a rate-limit refusal.
      def unavailable
        body = JSON.generate("error" => "rate limiter unavailable")
        [503, json_headers(body), [body]]
      end

      def rate_headers(result)
        result.headers(@families).transform_keys(&:downcase)
      end

      def json_headers(body)
        { "content-type" => "application/json", "content-length" => body.bytesize.to_s }
      end

      def build_client(options)
        settings = options.slice(*CLIENT_OPTIONS)
        endpoint = settings.delete(:endpoint) || Client::DEFAULT_ENDPOINT
        Client.new(endpoint, **settings)
      end

      def namespace_option(value)
        return value if value.respond_to?(:call) || (value.is_a?(String) && !value.empty?)

        raise ArgumentError, "#{self.class.name}: namespace: expected a non-empty String or a " \
                             "callable, got #{value.inspect}"
      end

      def hits_option(value)
        return value if value.is_a?(Integer) && value >= 0

        raise ArgumentError, "#{self.class.name}: hits: expected a whole number >= 0, got " \
                             "#{value.inspect}"
      end
    end
  end
end
