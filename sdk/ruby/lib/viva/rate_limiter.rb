# frozen_string_literal: true

# Client and Rack middleware for the Viva rate-limit sidecar, on Ruby's standard library only.
#
#   require "viva/rate_limiter"
#   limiter = Viva::RateLimiter::Client.new("http://localhost:8080")
#   limiter.allow?("user_123", "api_requests")
#
#   use Viva::RateLimiter::Middleware, namespace: "api_requests",
#                                      identifier: ->(env) { env["HTTP_X_API_KEY"] }
#
#   keys = Viva::RateLimiter::Client.new("http://localhost:8080", root_key: ENV["VIVA_ROOT_KEY"])
#   keys.verify_key(api_key, features: ["exports"]).code   # full mode: "VALID", "REVOKED", …
#
#   limiter.lease("user_123", "ws") { serve_the_socket }   # a slot of a concurrency limit
module Viva
  module RateLimiter
  end
end

require_relative "rate_limiter/version"
require_relative "rate_limiter/errors"
require_relative "rate_limiter/retry_policy"
require_relative "rate_limiter/headers"
require_relative "rate_limiter/result"
require_relative "rate_limiter/verification"
require_relative "rate_limiter/endpoint"
require_relative "rate_limiter/connection_pool"
require_relative "rate_limiter/lease_result"
require_relative "rate_limiter/lease"
require_relative "rate_limiter/lease_calls"
require_relative "rate_limiter/client"
require_relative "rate_limiter/middleware"
