# frozen_string_literal: true

require_relative "lib/viva/rate_limiter/version"

Gem::Specification.new do |spec|
  spec.name = "viva-rate_limiter"
  spec.version = Viva::RateLimiter::VERSION
  spec.summary = "Client and Rack middleware for the Viva rate-limit sidecar"
  spec.description = "Asks the Viva rate-limit sidecar whether a request may go ahead, over its " \
                     "REST API: allow?/check/report with keep-alive connections, timeouts, " \
                     "retries and fail-open/closed, and Rack middleware for Rails and Sinatra. " \
                     "Standard library only."
  spec.authors = ["Viva Rate Limiter maintainers"]
  spec.license = "Apache-2.0"
  spec.required_ruby_version = ">= 3.1"
  spec.files = Dir["lib/**/*.rb"] + ["README.md"]
  spec.require_paths = ["lib"]
  spec.metadata["rubygems_mfa_required"] = "true"
end
