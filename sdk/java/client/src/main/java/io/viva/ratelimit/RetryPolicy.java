package io.viva.ratelimit;

import java.time.Duration;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Retries of a call that never reached the sidecar: connection refused or timed out while
 * connecting. A timeout while waiting for the answer is not retried, since the hits may already
 * be charged, nor is any answer of the sidecar (a 503 included).
 *
 * <p>{@code attempts} counts every try (1: no retry). The pause before retry n (from 0) is drawn
 * uniformly from 0 to {@code min(maxBackoff, backoff * 2^n)} (full jitter, so that many clients
 * do not retry in step).
 */
public record RetryPolicy(int attempts, Duration backoff, Duration maxBackoff) {
  /** Three attempts, pauses from 50 ms doubling up to 1 s. */
  public static final RetryPolicy DEFAULT =
      new RetryPolicy(3, Duration.ofMillis(50), Duration.ofSeconds(1));

  public RetryPolicy {
    if (attempts < 1) {
      throw new IllegalArgumentException("RetryPolicy.attempts=" + attempts
          + "; expected at least 1");
    }
    if (backoff == null || maxBackoff == null || backoff.isNegative() || maxBackoff.isNegative()) {
      throw new IllegalArgumentException("RetryPolicy backoff values must be durations >= 0");
    }
  }

  /** One attempt, no retry. */
  public static RetryPolicy none() {
    return new RetryPolicy(1, Duration.ZERO, Duration.ZERO);
  }

  /** The pause before retry {@code n} (0 for the first retry), with full jitter. */
  public Duration delay(int n) {
    long cap = backoff.toNanos();
    for (int i = 0; i < n && cap < maxBackoff.toNanos(); i++) {
      cap *= 2;
    }
    cap = Math.min(cap, maxBackoff.toNanos());
    return Duration.ofNanos(cap == 0 ? 0 : ThreadLocalRandom.current().nextLong(cap + 1));
  }
}
