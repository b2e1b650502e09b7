package io.viva.ratelimit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.viva.ratelimit.testing.SidecarProcess;
import io.viva.ratelimit.testing.Tools;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * {@link RateLimiterClient#lease} against a real sidecar (the contract's rules: a room has 2
 * slots): background renewals beyond the time to live, the release by try-with-resources (the
 * block ending or throwing), a lease lost behind its holder's back, and the failure modes. The
 * calls underneath are the contract's (ContractTest runs leases.json).
 */
class LeaseTest {
  static SidecarProcess sidecar;
  static RateLimiterClient client;
  static final AtomicInteger ROOMS = new AtomicInteger();

  @BeforeAll
  static void start() {
    sidecar = SidecarProcess.start(Tools.repositoryRoot().resolve("sdk/contract/rules"));
    client = RateLimiterClient.builder().endpoint(sidecar.httpUrl())
        .timeout(Duration.ofSeconds(10)).build();
  }

  @AfterAll
  static void stop() {
    if (sidecar != null) {
      sidecar.close();
    }
  }

  /** A room nobody else uses. */
  static LeaseRequest newRoom() {
    return LeaseRequest.ofDescriptors("contract_leases",
        Descriptor.of("room", "java-" + ProcessHandle.current().pid() + "-"
            + ROOMS.incrementAndGet()));
  }

  /** How many of the room's 2 slots are held: a lease taken and given back. */
  static long active(LeaseRequest room) {
    LeaseResult probe = client.acquireLease(room);
    if (!probe.allowed()) {
      return probe.active().orElseThrow();
    }
    assertTrue(client.releaseLease(probe.leaseId().orElseThrow()).released());
    return probe.active().orElseThrow() - 1;
  }

  @Test
  void renewedInTheBackgroundBeyondItsTtl() throws InterruptedException {
    // ttl 2 s, renewed every 100 ms: lost only if the process stalled for 1.9 s
    LeaseRequest room = newRoom();
    try (Lease lease = client.lease(room.ttl(Duration.ofSeconds(2))
        .renewEvery(Duration.ofMillis(100)))) {
      assertTrue(lease.held());
      assertEquals(Duration.ofSeconds(2), lease.result().ttl().orElseThrow());
      Instant first = lease.result().expiresAt().orElseThrow();
      Thread.sleep(3000);
      assertTrue(lease.held() && !lease.lost(), lease.toString());
      assertTrue(lease.result().expiresAt().orElseThrow().isAfter(first.plusSeconds(1)),
          lease.toString());
      assertEquals(1, active(room));
      ReleaseResult released = lease.release();
      assertTrue(released.released());
      assertEquals(0, released.active().orElseThrow());
      assertFalse(lease.held());
    } // close() after release() sends nothing
    assertEquals(0, active(room));
  }

  @Test
  void releasedWhenTheBlockEndsOrThrows() {
    LeaseRequest room = newRoom();
    try (Lease lease = client.lease(room)) {
      assertTrue(lease.held());
      assertEquals(1, active(room));
    }
    assertEquals(0, active(room));
    IllegalStateException boom = assertThrows(IllegalStateException.class, () -> {
      try (Lease lease = client.lease(room)) {
        assertTrue(lease.held());
        assertEquals(1, active(room));
        throw new IllegalStateException("boom");
      }
    });
    assertEquals("boom", boom.getMessage());
    assertEquals(0, active(room));
  }

  @Test
  void refusedWhenEverySlotIsHeld() {
    LeaseRequest room = newRoom();
    try (Lease first = client.lease(room); Lease second = client.leaseAsync(room).join()) {
      assertTrue(first.held() && second.held());
      LeaseRefusedException refused = assertThrows(LeaseRefusedException.class,
          () -> client.lease(room));
      assertEquals(2, refused.result().active().orElseThrow());
      assertEquals(2, refused.result().limit().orElseThrow());
      assertTrue(refused.getMessage().matches(
          "lease refused: 2 of 2 held for 'per_room'; a slot frees within \\d+ s"),
          refused.getMessage());
    }
  }

  @Test
  void aLeaseReleasedBehindItsBackIsLost() throws InterruptedException {
    List<Lease> lost = new CopyOnWriteArrayList<>();
    try (Lease lease = client.lease(newRoom().renewEvery(Duration.ofMillis(50))
        .onLost(lost::add))) {
      assertTrue(client.releaseLease(lease.id().orElseThrow()).released());
      long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
      while (!lease.lost() && System.nanoTime() < deadline) {
        Thread.sleep(20);
      }
      assertTrue(lease.lost() && !lease.held());
      assertEquals(List.of(lease), lost);
      assertFalse(lease.release().released(), "a lost lease is not released again");
    }
  }

  @Test
  void failureModesWithoutTheSidecar() {
    RetryPolicy once = new RetryPolicy(1, Duration.ZERO, Duration.ZERO);
    String closed = Tools.closedEndpoint();
    try (Lease open = RateLimiterClient.builder().endpoint(closed).retry(once).build()
        .lease("u", "contract_leases")) {
      assertFalse(open.held());
      assertTrue(open.result().allowed() && open.result().error().isPresent());
    }
    LeaseRefusedException refused = assertThrows(LeaseRefusedException.class,
        () -> RateLimiterClient.builder().endpoint(closed).retry(once)
            .failureMode(FailureMode.CLOSED).build().lease("u", "contract_leases"));
    assertTrue(refused.result().error().isPresent(), refused.getMessage());
    assertThrows(SidecarUnavailableException.class,
        () -> RateLimiterClient.builder().endpoint(closed).retry(once)
            .failureMode(FailureMode.RAISE).build().lease("u", "contract_leases"));
  }
}
