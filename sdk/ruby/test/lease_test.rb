# frozen_string_literal: true

require_relative "test_helper"

# Client#lease against a real sidecar (the contract's rules: a room has 2 slots): background
# renewals beyond the time to live, the release when the block ends or raises, the explicit
# object, a lease lost behind its holder's back, and the failure modes. The calls underneath
# are the contract's (contract_test.rb runs leases.json).
class LeaseTest < Minitest::Test
  include NeedsServers
  ONCE = Viva::RateLimiter::RetryPolicy.new(attempts: 1)

  def limiter
    require_sidecar!
    sidecar = Harness::Shared.get(:lease_sidecar) do
      Harness::Sidecar.start(File.join(Harness::ROOT, "sdk", "contract", "rules"))
    end
    @limiter ||= Viva::RateLimiter::Client.new(sidecar.url, timeout: 10)
  end

  # A room nobody else uses, as lease options.
  def room
    @room ||= { descriptors: [{ "room" => user }] }
  end

  # How many of the room's 2 slots are held: a lease taken and given back.
  def active
    probe = limiter.acquire_lease(nil, "contract_leases", **room)
    return probe.active unless probe.allowed?

    assert limiter.release_lease(probe.lease_id).released?
    probe.active - 1
  end

  def test_renewed_in_the_background_beyond_its_ttl
    # ttl 2 s, renewed every 0.1 s: lost only if the process stalled for 1.9 s
    limiter.lease(nil, "contract_leases", ttl: 2, renew_every: 0.1, **room) do |lease|
      assert lease.held?
      assert_equal 2, lease.result.ttl_seconds
      first = lease.result.expires_at
      sleep 3
      assert lease.held? && !lease.lost?, lease.inspect
      assert_operator lease.result.expires_at, :>, first + 1
      assert_equal 1, active
    end
    assert_equal 0, active
  end

  def test_released_when_the_block_ends_or_raises
    assert_equal(:done, limiter.lease(nil, "contract_leases", **room) { :done })
    assert_equal 0, active
    error = assert_raises(RuntimeError) do
      limiter.lease(nil, "contract_leases", **room) do |lease|
        assert lease.held?
        assert_equal 1, active
        raise "boom"
      end
    end
    assert_equal "boom", error.message
    assert_equal 0, active
  end

  def test_the_explicit_object_is_released_once
    lease = limiter.lease(nil, "contract_leases", **room)
    assert_equal 1, active
    released = lease.release
    assert released.released?
    assert_equal 0, released.active
    refute lease.held?
    refute lease.release.released?, "a second release sends nothing"
  end

  def test_refused_when_every_slot_is_held
    held = Array.new(2) { limiter.lease(nil, "contract_leases", **room) }
    ran = false
    refused = assert_raises(Viva::RateLimiter::LeaseRefused) do
      limiter.lease(nil, "contract_leases", **room) { ran = true }
    end
    refute ran
    assert_equal [2, 2], [refused.result.active, refused.result.limit]
    assert_match(/\Alease refused: 2 of 2 held for "per_room"; a slot frees within \d+ s\z/, refused.message)
  ensure
    held&.each(&:release)
  end

  def test_a_lease_released_behind_its_back_is_lost
    lost = Queue.new
    limiter.lease(nil, "contract_leases", renew_every: 0.05, on_lost: ->(l) { lost << l }, **room) do |lease|
      assert limiter.release_lease(lease.id).released?
      Harness.wait_until(10, "on_lost was not called") { !lost.empty? }
      assert_same lease, lost.pop
      assert lease.lost?
      refute lease.held?
    end
  end

  def test_failure_modes_without_the_sidecar
    closed = Harness.closed_endpoint
    open = Viva::RateLimiter::Client.new(closed, retry_policy: ONCE)
    ran = open.lease("u", "contract_leases") do |lease|
      refute lease.held?
      assert_match(/ECONNREFUSED/, lease.result.error)
      :ran
    end
    assert_equal :ran, ran
    refused = assert_raises(Viva::RateLimiter::LeaseRefused) do
      Viva::RateLimiter::Client.new(closed, retry_policy: ONCE, failure_mode: :closed).lease("u", "contract_leases") { flunk }
    end
    assert_match(/could not be asked/, refused.message)
    assert_raises(Viva::RateLimiter::SidecarUnavailable) do
      Viva::RateLimiter::Client.new(closed, retry_policy: ONCE, failure_mode: :raise).lease("u", "contract_leases") { flunk }
    end
  end
end
