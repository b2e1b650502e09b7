# frozen_string_literal: true

require_relative "test_helper"

# The client against a real sidecar process on the memory store (and one on Redis).
class ClientTest < Minitest::Test
  include NeedsServers
  NS = "api_requests"

  def client
    @client ||= Viva::RateLimiter::Client.new(sidecar.url, timeout: 5)
  end

  def teardown
    @client&.close
  end

  def test_allow_then_refuse
    assert_equal [true, true, true, false, false], Array.new(5) { client.allow?(user, NS) }
  end

  def test_check_gives_the_whole_result
    result = client.check(user, NS, hits: 2)
    assert_equal [true, 3, 1, 3600, "identifier", nil],
                 [result.allowed?, result.limit, result.remaining, result.window_seconds,
                  result.policy, result.retry_after_seconds]
    assert result.reset_at.utc?
    assert_operator result.reset_at, :>, Time.now - 1
    assert_includes 1..3600, result.reset_after_seconds
    assert_nil result.error
    assert_empty result.results
    assert_equal 1, result.attempts
    refused = client.check(user, NS, hits: 2)
    refute refused.allowed?
    assert_equal refused.reset_after_seconds, refused.retry_after_seconds
  end

  SECONDS = /(?<=t=)\d+|\A\d+\z/

  def test_headers_are_the_sidecars_own
    [1, 5].each do |hits|
      raw = Net::HTTP.post(URI("#{sidecar.url}/v1/check"),
                           JSON.generate(namespace: NS, identifier: user, hits: hits),
                           "Content-Type" => "application/json")
      peeked = client.peek(user, NS)
      expected = %w[RateLimit-Policy RateLimit X-RateLimit-Limit X-RateLimit-Remaining
                    X-RateLimit-Reset Retry-After].filter_map { |n| [n, raw[n]] if raw[n] }
      refute_empty expected
      # The two answers may straddle a second: seconds-to-reset may differ by one.
      assert_equal(expected.map { |n, v| [n, v.gsub(SECONDS, "N")] },
                   peeked.headers.map { |n, v| [n, v.gsub(SECONDS, "N")] })
      expected.zip(peeked.headers.to_a).each do |(_, want), (_, got)|
        want.scan(SECONDS).zip(got.scan(SECONDS)).each { |a, b| assert_in_delta a.to_i, b.to_i, 1 }
      end
    end
  end

  def test_header_families_can_be_chosen
    result = client.check(user, NS, hits: 4)
    assert_equal ["Retry-After"], result.headers(["retry-after"]).keys
    assert_raises(ArgumentError) { Viva::RateLimiter::Headers.families(%w[ietf draft]) }
  end

  def test_report_and_peek
    reported = client.report(user, NS, hits: 10)
    assert_equal [false, 0], [reported.allowed?, reported.remaining]
    refute client.peek(user, NS).allowed?
  end

  def test_several_descriptors
    result = client.check(nil, "shop", descriptors: [{ "user" => user },
                                                     [["route", "/#{user}"], %w[method POST]],
                                                     { "other" => "x" }])
    assert_equal [[true, 5, "per_user"], [true, 2, "route.method"], [true, nil, nil]],
                 result.results.map { |r| [r.allowed?, r.limit, r.policy] }
    assert_equal [2, 1], [result.limit, result.remaining]
    assert_equal "1", result.headers["X-RateLimit-Remaining"]
  end

  def test_namespace_without_rules_and_unlimited
    none = client.check(user, "no_rules_here")
    assert_equal [true, nil, {}], [none.allowed?, none.limit, none.headers]
    vip = client.check("vip", NS, hits: 1000)
    assert_equal [true, nil], [vip.allowed?, vip.limit]
  end

  def test_the_sidecar_names_the_bad_field
    error = assert_raises(Viva::RateLimiter::InvalidRequest) do
      client.check(nil, "shop", descriptors: [{ "k" => "v" }] * 21)
    end
    assert_equal "descriptors", error.field
    error = assert_raises(Viva::RateLimiter::InvalidRequest) do
      client.check(nil, "shop", descriptors: [{ "" => "v" }])
    end
    assert_equal "descriptors[0][0].key", error.field
    error = assert_raises(Viva::RateLimiter::InvalidRequest) { client.check("u", NS, hits: 10_000_000) }
    assert_equal "hits", error.field
    assert_match(/out of range/, error.message)
  end

  def test_obvious_mistakes_fail_before_the_call
    cases = { ["", NS, 1] => "identifier", [nil, NS, 1] => "identifier", ["u", "", 1] => "namespace",
              ["u", NS, -1] => "hits", ["u", NS, 1.5] => "hits", ["u", NS, true] => "hits" }
    cases.each do |(identifier, namespace, hits), field|
      error = assert_raises(Viva::RateLimiter::InvalidRequest) { client.check(identifier, namespace, hits: hits) }
      assert_equal field, error.field
      assert_kind_of ArgumentError, error
      assert_kind_of Viva::RateLimiter::Error, error
    end
    error = assert_raises(Viva::RateLimiter::InvalidRequest) do
      client.check("u", NS, descriptors: [{ "a" => "b" }])
    end
    assert_equal "descriptors", error.field
  end

  def test_unicode_identifiers_travel_intact
    odd = "#{user}-é😀\"\\"
    assert client.allow?(odd, NS, hits: 3)
    refute client.allow?(odd, NS)
    assert client.allow?("#{odd}x", NS)
  end

  def test_connections_are_reused
    proxy = Harness::CountingProxy.new(URI(sidecar.url).port)
    fresh = Viva::RateLimiter::Client.new(proxy.url, timeout: 5)
    20.times { assert fresh.peek(user, NS).error.nil? }
    assert_equal 1, proxy.accepted
  ensure
    fresh&.close
    proxy&.close
  end

  def test_threads_share_one_client
    threads = Array.new(8) { Thread.new { Array.new(5) { client.allow?(user, "shop") } } }
    threads.each(&:join)
    after = client.check(nil, "shop", hits: 0, descriptors: [{ "user" => user }])
    assert_equal 5, after.results.first.limit
  end

  def test_endpoint_forms
    port = URI(sidecar.url).port
    ["127.0.0.1:#{port}", "localhost:#{port}", "http://127.0.0.1:#{port}/"].each do |endpoint|
      result = Viva::RateLimiter::Client.new(endpoint, timeout: 5).check(user, NS)
      assert_nil result.error, endpoint
    end
    assert_equal "https://rl.internal/prefix",
                 Viva::RateLimiter::Endpoint.parse("HTTPS://rl.internal/prefix/").to_s.downcase
    ["", "ftp://x", "http://", "http://h:1/?q=1"].each do |bad|
      error = assert_raises(ArgumentError, bad) { Viva::RateLimiter::Client.new(bad) }
      assert_match(/endpoint/, error.message)
    end
    assert_raises(ArgumentError) { Viva::RateLimiter::Client.new(timeout: 0) }
    assert_raises(ArgumentError) { Viva::RateLimiter::Client.new(failure_mode: :sometimes) }
  end

  def test_redis_backed_sidecar
    redis_sidecar = Harness::Shared.get(:redis_sidecar) do
      Harness::Sidecar.start(Harness.rules_dir, "REDIS_URL" => redis.url, "REDIS_TIMEOUT" => "2s")
    end
    limiter = Viva::RateLimiter::Client.new(redis_sidecar.url, timeout: 5)
    assert_equal [true, true, true, false], Array.new(4) { limiter.allow?(user, NS) }
  end
end
