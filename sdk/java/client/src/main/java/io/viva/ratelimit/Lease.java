package io.viva.ratelimit;

import java.lang.System.Logger.Level;
import java.time.Duration;
import java.util.Optional;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

/**
 * A slot of a concurrency limit held by {@link RateLimiterClient#lease}: renewed in the
 * background every third of its time to live until {@link #close()} (or {@link #release()}),
 * so it lasts as long as the work; a process that dies stops renewing, and its slot frees when
 * the lease expires. Thread-safe.
 *
 * <pre>{@code
 * try (Lease lease = limiter.lease("user_123", "ws")) {   // LeaseRefusedException when full
 *   serveTheWebSocket();                                  // renewed in the background
 * }                                                       // released, whatever happened
 * }</pre>
 *
 * <p>If the sidecar answers that the lease is gone (the process stalled past its time to live,
 * or someone released it), {@link #lost()} turns true, renewals stop and the request's
 * {@code onLost} is called. A renewal that cannot get through is tried again at the next
 * interval; unless the failure mode is OPEN, the lease counts as lost once a whole time to live
 * has passed without one.
 */
public final class Lease implements AutoCloseable {
  /** The shortest interval between two renewals. */
  public static final Duration MIN_RENEW_EVERY = Duration.ofMillis(50);

  private static final System.Logger LOG = System.getLogger(Lease.class.getName());
  // One daemon thread for the timers of every lease: it only starts the asynchronous renewals,
  // which run on the HttpClient's executor, so a slow sidecar never holds it up.
  private static final ScheduledExecutorService TIMERS =
      Executors.newSingleThreadScheduledExecutor(task -> {
        Thread thread = new Thread(task, "viva-lease-renewals");
        thread.setDaemon(true);
        return thread;
      });

  private final RateLimiterClient client;
  private final Duration renewEvery;
  private final Consumer<Lease> onLost;
  private LeaseResult result; // the acquire's, then the last renewal's that confirmed it
  private long confirmed = System.nanoTime();
  private boolean lost;
  private boolean released;
  private ScheduledFuture<?> next;

  private Lease(RateLimiterClient client, LeaseRequest request, LeaseResult result) {
    this.client = client;
    this.renewEvery = request.renewEvery().orElse(null);
    this.onLost = request.onLost().orElse(null);
    this.result = result;
  }

  /** The lease for an acquire's answer (LeaseRefusedException when it refused), renewing. */
  static Lease hold(RateLimiterClient client, LeaseRequest request, LeaseResult result) {
    if (!result.allowed()) {
      throw new LeaseRefusedException(result);
    }
    Lease lease = new Lease(client, request, result);
    lease.schedule();
    return lease;
  }

  /** The lease's id; empty when nothing is held (no concurrency limit applies, or the failure
   *  mode OPEN let the caller through: {@code result().error()} then says why). */
  public synchronized Optional<String> id() {
    return result.leaseId();
  }

  /** The acquire's answer, then the last renewal's that confirmed the lease. */
  public synchronized LeaseResult result() {
    return result;
  }

  /** Whether a slot is held now: false when nothing was taken, once lost, and after release. */
  public synchronized boolean held() {
    return result.leaseId().isPresent() && !lost && !released;
  }

  /** The lease no longer holds its slots (see the class comment); renewals have stopped. */
  public synchronized boolean lost() {
    return lost;
  }

  /**
   * Renew now (the background renewals do so anyway), for as long as at the acquire; a lease
   * that holds nothing answers its result untouched. With failure mode RAISE this throws
   * {@link SidecarUnavailableException} when the sidecar cannot be asked.
   */
  public LeaseResult renew() {
    String id;
    synchronized (this) {
      if (!held()) {
        return result;
      }
      id = result.leaseId().orElseThrow();
    }
    LeaseResult answer = client.renewLease(id);
    take(answer);
    return answer;
  }

  /**
   * Stop renewing and free the slot, once: a lease that holds nothing, is lost or was released
   * sends nothing ({@code released} false). With failure mode RAISE this throws
   * {@link SidecarUnavailableException} when the sidecar cannot be asked.
   */
  public ReleaseResult release() {
    String id;
    synchronized (this) {
      if (next != null) {
        next.cancel(false);
      }
      boolean send = held();
      released = true;
      if (!send) {
        return new ReleaseResult(false, null, null, null, 0);
      }
      id = result.leaseId().orElseThrow();
    }
    return client.releaseLease(id);
  }

  /** {@link #release()}, never throwing: a release that cannot get through is logged, and the
   *  lease then expires with its time to live. */
  @Override
  public void close() {
    try {
      ReleaseResult answer = release();
      answer.error().ifPresent(error -> LOG.log(Level.WARNING,
          "could not release the lease (it expires with its ttl): {0}", error));
    } catch (SidecarUnavailableException e) {
      LOG.log(Level.WARNING, "could not release the lease (it expires with its ttl): {0}",
          e.getMessage());
    }
  }

  private synchronized void schedule() {
    Duration ttl = result.ttl().orElse(null);
    if (!held() || ttl == null || ttl.isZero()) {
      return;
    }
    Duration every = renewEvery != null ? renewEvery : ttl.dividedBy(3);
    long millis = Math.max(MIN_RENEW_EVERY.toMillis(), every.toMillis());
    next = TIMERS.schedule(this::renewInBackground, millis, TimeUnit.MILLISECONDS);
  }

  private void renewInBackground() {
    String id;
    synchronized (this) {
      if (!held()) {
        return;
      }
      id = result.leaseId().orElseThrow();
    }
    client.renewLeaseAsync(id)
        .exceptionally(failure -> LeaseResult.failure(FailureMode.CLOSED, String.valueOf(
            failure.getCause() != null ? failure.getCause().getMessage() : failure), 1))
        .thenAccept(answer -> {
          if (take(answer)) {
            schedule();
          }
        });
  }

  /** Take a renewal's answer in; false once the lease is lost or released (stop renewing). */
  private boolean take(LeaseResult answer) {
    synchronized (this) {
      if (lost || released) {
        return false;
      }
      if (answer.allowed() && answer.error().isEmpty()) {
        result = answer;
        confirmed = System.nanoTime();
        return true;
      }
      boolean gone = answer.error().isEmpty(); // the sidecar said so; an error is an outage
      long ttl = result.ttl().map(Duration::toNanos).orElse(Long.MAX_VALUE);
      boolean unconfirmed = client.failureMode() != FailureMode.OPEN
          && System.nanoTime() - confirmed > ttl;
      if (!gone && !unconfirmed) {
        LOG.log(Level.DEBUG, "lease renewal not confirmed, trying again: {0}",
            answer.error().orElse(""));
        return true;
      }
      lost = true;
    }
    if (onLost != null) {
      try {
        onLost.accept(this);
      } catch (RuntimeException e) {
        LOG.log(Level.ERROR, "the onLost callback failed", e);
      }
    }
    return false;
  }

  @Override
  public synchronized String toString() {
    return "Lease{id=" + result.leaseId().orElse(null) + ", held=" + held() + ", lost=" + lost
        + ", expiresAt=" + result.expiresAt().orElse(null) + "}";
  }
}
