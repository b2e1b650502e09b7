# frozen_string_literal: true

require_relative "test_helper"
require_relative "support/scripted_server"

# Retries with backoff, then the failure mode: an unreachable, a stuck, a failing sidecar.
class FailureTest < Minitest::Test
  include NeedsServers
  FAST = Viva::RateLimiter::RetryPolicy.new(attempts: 3, backoff: 0.01, max_backoff: 0.02)

  OK = [200, '{"allowed": true, "limit": null}', 0].freeze
  DOWN = [503, '{"error": "store down", "field": null}', 0].freeze

  def client(url, mode, **options)
    Viva::RateLimiter::Client.new(url, retry_policy: FAST, failure_mode: mode, **options)
  end

  def test_unreachable_fails_open
    result = client(Harness.closed_endpoint, :open).check("u", "api")
    assert result.allowed?
    assert_match(/ECONNREFUSED/, result.error)
    assert_equal 3, result.attempts
    assert_empty result.headers
  end

  def test_unreachable_fails_closed
    limiter = client(Harness.closed_endpoint, :closed)
    refute limiter.allow?("u", "api")
    assert_equal 3, limiter.check("u", "api").attempts
  end

  def test_unreachable_raises_when_asked
    error = assert_raises(Viva::RateLimiter::SidecarUnavailable) do
      client(Harness.closed_endpoint, :raise).allow?("u", "api")
    end
    assert_match(/ECONNREFUSED/, error.message)
    assert_equal 3, error.attempts
    assert_kind_of Viva::RateLimiter::Error, error
  end

  def test_the_timeout_bounds_a_stuck_sidecar
    silent = Harness::SilentServer.new
    %i[open closed].each do |mode|
      limiter = client("127.0.0.1:#{silent.port}", mode, timeout: 0.2)
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      result = limiter.check("u", "api")
      elapsed = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
      assert_equal mode == :open, result.allowed?
      assert_match(/ReadTimeout/, result.error)
      assert_equal 1, result.attempts, "not retried: the request was sent, it may be counted"
      assert_includes 0.15..2.0, elapsed
    end
  ensure
    silent&.close
  end

  def test_a_refused_connection_is_retried_until_the_sidecar_listens
    port = Harness.free_port
    patient = Viva::RateLimiter::RetryPolicy.new(attempts: 100, backoff: 0.02, max_backoff: 0.05)
    limiter = Viva::RateLimiter::Client.new("127.0.0.1:#{port}", failure_mode: :raise,
                                                                 retry_policy: patient)
    call = Thread.new { limiter.check("u", "api") }
    sleep 0.3 # the first attempts are refused
    late = ScriptedServer.new([OK], port: port)
    result = call.value
    assert result.allowed?
    assert_nil result.error
    assert_operator result.attempts, :>, 1
    assert_equal 1, late.calls
  ensure
    late&.close
  end

  def test_a_503_is_an_answer_not_retried
    server = ScriptedServer.new([DOWN, OK])
    result = client(server.url, :closed).check("u", "api")
    refute result.allowed?
    assert_equal "HTTP 503 from the sidecar: store down", result.error
    assert_equal [1, 1], [result.attempts, server.calls]
  ensure
    server&.close
  end

  def test_a_read_timeout_is_not_retried
    server = ScriptedServer.new([[200, '{"allowed": false}', 1.5], OK])
    result = client(server.url, :open, timeout: 0.3).check("u", "api")
    assert result.allowed?
    assert_match(/ReadTimeout/, result.error)
    assert_equal 1, server.calls
  ensure
    server&.close
  end

  def test_unexpected_answers_are_failures
    server = ScriptedServer.new([[404, "nope", 0], [200, '{"allowed": "yes"}', 0], [200, "<html>", 0]])
    limiter = client(server.url, :closed)
    errors = Array.new(3) { limiter.check("u", "api") }.map { |r| r.allowed? ? "allowed" : r.error }
    assert_equal "HTTP 404 from the sidecar: nope", errors[0]
    assert_match(/\Athe sidecar's answer is not a check result: expected an object/, errors[1])
    assert_match(/\Athe sidecar's answer is not a check result: /, errors[2])
    assert_equal 3, server.calls
  ensure
    server&.close
  end

  def test_a_400_always_raises
    server = ScriptedServer.new([[400, '{"error": "hits: 5 is out of range", "field": "hits"}', 0],
                                 [413, "", 0]])
    limiter = client(server.url, :open)
    error = assert_raises(Viva::RateLimiter::InvalidRequest) { limiter.allow?("u", "api") }
    assert_equal ["hits", "hits: 5 is out of range"], [error.field, error.message]
    error = assert_raises(Viva::RateLimiter::InvalidRequest) { limiter.allow?("u", "api") }
    assert_nil error.field
  ensure
    server&.close
  end

  def test_a_store_outage_is_a_503_the_failure_mode_answers
    require_sidecar!
    require_redis!
    store = Harness::Redis.new
    outage = Harness::Sidecar.start(Harness.rules_dir, "REDIS_URL" => store.url, "REDIS_TIMEOUT" => "2s")
    assert Viva::RateLimiter::Client.new(outage.url, timeout: 5).allow?(user, "api_requests")
    store.stop
    refused = client(outage.url, :closed, timeout: 5).check(user, "api_requests")
    refute refused.allowed?
    assert_match(/\AHTTP 503 from the sidecar: /, refused.error)
    assert client(outage.url, :open, timeout: 5).allow?(user, "api_requests")
  ensure
    outage&.stop
    store&.stop
  end

  def test_backoff_grows_and_is_capped
    policy = Viva::RateLimiter::RetryPolicy.new(attempts: 6, backoff: 0.1, max_backoff: 0.3)
    200.times do
      [0.1, 0.2, 0.3, 0.3, 0.3].each_with_index do |cap, n|
        assert_includes 0.0..cap, policy.delay(n)
      end
    end
    assert_raises(ArgumentError) { Viva::RateLimiter::RetryPolicy.new(attempts: 0) }
    assert_equal 0.0, Viva::RateLimiter::RetryPolicy.none.delay(3)
  end
end
