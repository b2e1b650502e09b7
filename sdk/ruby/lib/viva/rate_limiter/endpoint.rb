# frozen_string_literal: true

require "uri"

module Viva
  module RateLimiter
    # The sidecar's HTTP address, given as a URL or, as in the other SDKs, as host:port.
    module Endpoint
      module_function

      # "http://host:port[/prefix]", "https://...", or "host:port" (then http) → URI. A path
      # prefix is kept, for a sidecar behind a path-routing proxy.
      def parse(endpoint)
        text = endpoint.to_s.strip
        if text.empty?
          raise ArgumentError, "endpoint must be a URL like http://localhost:8080 or host:port"
        end

        text = "http://#{text}" unless text.include?("://")
        uri = URI.parse(text)
        unless %w[http https].include?(uri.scheme&.downcase)
          raise ArgumentError, "endpoint #{endpoint.inspect}: scheme #{uri.scheme.inspect} is " \
                               "not supported; expected http or https"
        end
        if uri.host.nil? || uri.host.empty? || uri.query || uri.fragment
          raise ArgumentError, "endpoint #{endpoint.inspect} must be scheme://host[:port][/path], " \
                               "without query or fragment"
        end

        uri.path = uri.path.sub(%r{/+\z}, "")
        uri
      rescue URI::InvalidURIError => e
        raise ArgumentError, "endpoint #{endpoint.inspect} is not a URL: #{e.message}"
      end
    end
  end
end
