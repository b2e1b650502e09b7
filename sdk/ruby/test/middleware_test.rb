# frozen_string_literal: true

require_relative "test_helper"
require_relative "support/rack_server"
require "rack"
require "rack/lint"
require "rack/test"

# The Rack middleware against a real sidecar: through Rack::Test (with Rack::Lint checking the
# Rack protocol both ways) and through a real WEBrick server over HTTP.
class MiddlewareTest < Minitest::Test
  include NeedsServers
  include Rack::Test::Methods
  NS = "api_requests"
  HELLO = ->(_env) { [200, { "content-type" => "text/plain" }, ["ok"]] }

  def build(**options)
    defaults = { client: Viva::RateLimiter::Client.new(sidecar.url, timeout: 5), namespace: NS,
                 identifier: ->(env) { env["HTTP_X_USER"] } }
    Rack::Lint.new(Viva::RateLimiter::Middleware.new(Rack::Lint.new(HELLO), **defaults, **options))
  end

  def app
    @app ||= build
  end

  def test_refuses_the_request_after_the_limit
    3.times do |i|
      get "/hello", {}, "HTTP_X_USER" => user
      assert_equal [200, "ok"], [last_response.status, last_response.body]
      assert_equal '"identifier";q=3;w=3600', last_response.headers["ratelimit-policy"]
      assert_equal (2 - i).to_s, last_response.headers["x-ratelimit-remaining"]
      assert_nil last_response.headers["retry-after"]
    end
    get "/hello", {}, "HTTP_X_USER" => user
    assert_equal 429, last_response.status
    retry_after = Integer(last_response.headers["retry-after"])
    assert_includes 1..3600, retry_after
    assert_match(/\A"identifier";r=0;t=\d+\z/, last_response.headers["ratelimit"])
    assert_equal "application/json", last_response.headers["content-type"]
    assert_equal({ "error" => "rate limit exceeded", "retry_after_seconds" => retry_after },
                 JSON.parse(last_response.body))
  end

  def test_no_identifier_passes_unchecked
    5.times do
      get "/hello"
      assert_equal 200, last_response.status
      assert_nil last_response.headers["ratelimit"]
    end
  end

  def test_namespace_and_hits_options
    @app = build(namespace: ->(env) { env["PATH_INFO"].start_with?("/free") ? "no_rules" : NS },
                 hits: 2, headers: %w[x])
    get "/api", {}, "HTTP_X_USER" => user
    assert_equal ["1", nil], [last_response.headers["x-ratelimit-remaining"],
                              last_response.headers["ratelimit"]]
    get "/api", {}, "HTTP_X_USER" => user
    assert_equal 429, last_response.status
    get "/free", {}, "HTTP_X_USER" => user
    assert_equal [200, nil], [last_response.status, last_response.headers["x-ratelimit-limit"]]
  end

  # (Rack::Test keeps the app of a test's first request: one app per test.)
  def test_fail_open
    @app = build(client: nil, endpoint: Harness.closed_endpoint,
                 retry_policy: Viva::RateLimiter::RetryPolicy.none)
    get "/hello", {}, "HTTP_X_USER" => user
    assert_equal [200, "ok", nil], [last_response.status, last_response.body,
                                    last_response.headers["ratelimit"]]
  end

  def test_fail_closed
    @app = build(client: nil, endpoint: Harness.closed_endpoint,
                 retry_policy: Viva::RateLimiter::RetryPolicy.none, failure_mode: :closed)
    get "/hello", {}, "HTTP_X_USER" => user
    assert_equal 503, last_response.status
    assert_equal({ "error" => "rate limiter unavailable" }, JSON.parse(last_response.body))
  end

  def test_options_are_checked
    error = assert_raises(ArgumentError) { Viva::RateLimiter::Middleware.new(HELLO, namespace: NS, hit: 1) }
    assert_match(/unknown option :hit/, error.message)
    assert_raises(ArgumentError) { Viva::RateLimiter::Middleware.new(HELLO, namespace: "") }
    assert_raises(ArgumentError) { Viva::RateLimiter::Middleware.new(HELLO, namespace: NS, hits: -1) }
    error = assert_raises(ArgumentError) { Viva::RateLimiter::Middleware.new(HELLO, namespace: NS, headers: %w[ietf y]) }
    assert_match(/"y" is not a header family/, error.message)
  end

  def test_default_identifier_is_the_client_address
    @app = Viva::RateLimiter::Middleware.new(HELLO, namespace: "shop",
                                                    client: Viva::RateLimiter::Client.new(sidecar.url, timeout: 5))
    get "/hello", {}, "REMOTE_ADDR" => "10.1.2.3"
    assert_equal 200, last_response.status # shop has no "identifier" rule: checked, no limit
  end

  # A real server over HTTP: WEBrick running the app behind the middleware, as `rackup` would.
  def test_a_real_server_refuses_the_request_after_the_limit
    server = RackServer.new(build)
    statuses = Array.new(4) do
      Net::HTTP.start("127.0.0.1", server.port) do |http|
        response = http.get("/hello", "X-User" => user)
        [response.code.to_i, response["RateLimit"], response["Retry-After"]]
      end
    end
    assert_equal [200, 200, 200, 429], statuses.map(&:first)
    assert_match(/\A"identifier";r=0;t=\d+\z/, statuses.last[1])
    assert_includes 1..3600, Integer(statuses.last[2])
    assert_nil statuses[2][2]
  ensure
    server&.close
  end
end
