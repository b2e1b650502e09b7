# frozen_string_literal: true

require_relative "test_helper"
require_relative "support/scripted_server"

# Client#verify_key beyond the contract (contract_test.rb runs verify.json against real
# full-mode sidecars): what other servers on the sidecar's port answer, :raise, and what the
# client refuses itself.
class VerifyTest < Minitest::Test
  KEY = "viva_AcXgQx9sbHq9c2jnvM1WkN78NHQ6"
  ROOT = "vroot_test_0123456789abcdef0123456789abcdef"
  FAST = Viva::RateLimiter::RetryPolicy.new(attempts: 2, backoff: 0.01, max_backoff: 0.02)
  VERDICT = '{"valid": false, "code": "QUOTA_EXCEEDED", "key_id": "key_1", "customer_id": "c", ' \
            '"plan": "pro", "features": ["exports"], "remaining": 0, "reset_at": ' \
            '"2030-01-01T00:00:00Z", "limits": [{"name": "monthly", "limit": 2, "remaining": 0, ' \
            '"reset_at": "2030-01-01T00:00:00Z", "exceeded": true}]}'

  def client(url, **options)
    Viva::RateLimiter::Client.new(url, retry_policy: FAST, root_key: ROOT, **options)
  end

  def serving(*steps)
    server = ScriptedServer.new(steps)
    yield server
  ensure
    server&.close
  end

  def test_the_verdict_is_typed_and_the_root_key_goes_with_verifications_only
    serving([200, VERDICT, 0], [200, '{"allowed": true}', 0]) do |server|
      limiter = client(server.url)
      verdict = limiter.verify_key(KEY, cost: 0, limits: ["monthly"], features: ["exports"])
      assert_equal Viva::RateLimiter::VerifyCode::QUOTA_EXCEEDED, verdict.code
      refute verdict.valid?
      assert_equal [["monthly", 2, 0, true]], verdict.limits.map { |l| [l.name, l.limit, l.remaining, l.exceeded?] }
      limiter.check("u", "api")
      path, authorization, body = server.requests.first
      assert_equal ["/v1/keys/verify", "Bearer #{ROOT}"], [path, authorization]
      assert_equal({ "key" => KEY, "cost" => 0, "limits" => ["monthly"], "features" => ["exports"] }, JSON.parse(body))
      assert_nil server.requests.last[1]
    end
  end

  # Every printable ASCII character but the space, padded to the longest address accepted.
  LONGEST = ((0x21..0x7e).map(&:chr).join + ("z" * 128))[0, 128]

  def test_the_client_address_is_sent_as_given
    ["203.0.113.9", "[2001:db8::1]:443", LONGEST].each do |address|
      serving([200, '{"valid": false, "code": "NOT_FOUND"}', 0]) do |server|
        client(server.url).verify_key(KEY, client_address: address)
        assert_equal({ "key" => KEY, "cost" => 1, "client_address" => address }, JSON.parse(server.requests.first[2]))
      end
    end
  end

  def test_fails_closed_by_default_and_never_quotes_a_body_the_sidecar_did_not_write
    serving([502, "upstream said #{KEY}", 0], [503, "{}", 0]) do |server|
      closed = client(server.url).verify_key(KEY)
      assert_equal [false, nil, "HTTP 502 from the sidecar"], [closed.valid?, closed.code, closed.error]
      opened = client(server.url, verify_failure_mode: :open).verify_key(KEY)
      assert_equal [true, nil, 1], [opened.valid?, opened.code, opened.attempts]
    end
    assert_equal :closed, Viva::RateLimiter::Client.new.verify_failure_mode
  end

  def test_raise_raises_when_the_sidecar_is_unreachable
    error = assert_raises(Viva::RateLimiter::SidecarUnavailable) do
      client(Harness.closed_endpoint, verify_failure_mode: :raise).verify_key(KEY)
    end
    assert_equal 2, error.attempts
  end

  def test_a_refused_or_missing_root_key_raises_even_failing_open
    [401, 403].each do |status|
      serving([status, '{"error": "the root key is not valid", "field": null}', 0]) do |server|
        error = assert_raises(Viva::RateLimiter::Unauthorized) do
          client(server.url, verify_failure_mode: :open).verify_key(KEY)
        end
        assert_equal status, error.status
        refute_includes error.message, ROOT
      end
    end
    none = Viva::RateLimiter::Client.new(Harness.closed_endpoint, verify_failure_mode: :open)
    assert_nil assert_raises(Viva::RateLimiter::Unauthorized) { none.verify_key(KEY) }.status
  end

  def test_mistakes_name_the_field_and_nothing_shows_the_secrets
    limiter = client(Harness.closed_endpoint)
    [[nil, {}, "key"], [KEY, { cost: -1 }, "cost"], [KEY, { cost: 1.5 }, "cost"],
     [KEY, { limits: "monthly" }, "limits"], [KEY, { features: [:exports] }, "features"],
     [KEY, { client_address: "" }, "client_address"], [KEY, { client_address: "a b" }, "client_address"],
     [KEY, { client_address: "z" * 129 }, "client_address"], [KEY, { client_address: "caf\u00e9" }, "client_address"],
     [KEY, { client_address: "tab\t" }, "client_address"], [KEY, { client_address: "del\x7f" }, "client_address"],
     [KEY, { client_address: :"203.0.113.9" }, "client_address"]].each do |key, options, field|
      error = assert_raises(Viva::RateLimiter::InvalidRequest) { limiter.verify_key(key, **options) }
      assert_equal field, error.field
      refute_includes error.message, KEY
    end
    assert_raises(ArgumentError) { Viva::RateLimiter::Client.new(root_key: " ") }
    assert_raises(ArgumentError) { Viva::RateLimiter::Client.new(verify_failure_mode: :sometimes) }
    [limiter.inspect, limiter.to_s].each { |text| refute_includes text, ROOT }
    assert_includes limiter.inspect, "root_key=<set>"
  end
end
