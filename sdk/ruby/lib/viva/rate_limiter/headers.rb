# frozen_string_literal: true

module Viva
  module RateLimiter
    # Rate-limit response headers from a Result, exactly as the sidecar writes them:
    #
    # - RateLimit-Policy: "<policy>";q=<limit>;w=<window> and
    #   RateLimit: "<policy>";r=<remaining>;t=<reset> (IETF draft-ietf-httpapi-ratelimit-headers:
    #   Structured Field Lists, one member per limited descriptor);
    # - X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset (seconds from now);
    # - Retry-After (seconds) when refused.
    module Headers
      FAMILIES = %w[ietf x retry-after].freeze

      module_function

      # Checks a list of family names ("ietf", "x", "retry-after"); ArgumentError names a bad one.
      def families(names)
        list = Array(names).map(&:to_s)
        bad = list - FAMILIES
        unless bad.empty?
          raise ArgumentError, "headers: #{bad.first.inspect} is not a header family; expected " \
                               "one of #{FAMILIES.join(', ')}"
        end
        list.freeze
      end

      # An ordered Hash of header name => value for +result+.
      def of(result, families = FAMILIES)
        out = {}
        members = result.results.empty? ? [result] : result.results
        limited = members.reject { |r| r.limit.nil? }
        if families.include?("ietf") && !limited.empty?
          out["RateLimit-Policy"] = limited.map do |r|
            "#{sf_string(r.policy)};q=#{r.limit};w=#{r.window_seconds}"
          end.join(", ")
          out["RateLimit"] = limited.map do |r|
            "#{sf_string(r.policy)};r=#{r.remaining};t=#{r.reset_after_seconds}"
          end.join(", ")
        end
        if families.include?("x") && !result.limit.nil?
          out["X-RateLimit-Limit"] = result.limit.to_s
          out["X-RateLimit-Remaining"] = result.remaining.to_s
          out["X-RateLimit-Reset"] = result.reset_after_seconds.to_s
        end
        if families.include?("retry-after") && !result.retry_after_seconds.nil?
          out["Retry-After"] = result.retry_after_seconds.to_s
        end
        out
      end

      # An RFC 8941 String: printable ASCII, backslash and double quote escaped.
      def sf_string(text)
        safe = (text || "default").gsub(/[^\x20-\x7e]/, "_")
        "\"#{safe.gsub(/["\\]/) { |c| "\\#{c}" }}\""
      end
    end
  end
end
