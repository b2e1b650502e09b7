package io.viva.ratelimit;

import java.time.Duration;
import java.time.Instant;
import java.time.format.DateTimeParseException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.OptionalLong;

/**
 * The sidecar's answer to an acquire or a renewal of a lease (and, when the lease was asked for
 * descriptors, its answer for each of them in {@link #results()}).
 *
 * <p>{@link #allowed()}: the lease holds its slots (a renewal: still holds them; false once the
 * lease is gone: expired, released, never issued). {@link #leaseId()} renews and releases it;
 * empty when nothing is held (refused, no concurrency limit applies, or the failure mode
 * answered: then {@link #error()} is present).
 */
public final class LeaseResult {
  private final boolean allowed;
  private final String leaseId;
  private final Long active;
  private final Long limit;
  private final Instant expiresAt;
  private final Duration ttl;
  private final Long retryAfterSeconds;
  private final String policy;
  private final List<LeaseResult> results;
  private final String error;
  private final int attempts;

  private LeaseResult(boolean allowed, String leaseId, Long active, Long limit, Instant expiresAt,
      Duration ttl, Long retryAfterSeconds, String policy, List<LeaseResult> results,
      String error, int attempts) {
    this.allowed = allowed;
    this.leaseId = leaseId;
    this.active = active;
    this.limit = limit;
    this.expiresAt = expiresAt;
    this.ttl = ttl;
    this.retryAfterSeconds = retryAfterSeconds;
    this.policy = policy;
    this.results = List.copyOf(results);
    this.error = error;
    this.attempts = attempts;
  }

  /** A lease that is gone (the sidecar's 404): it holds nothing. */
  static LeaseResult gone() {
    return new LeaseResult(false, null, null, null, null, null, null, null, List.of(), null, 1);
  }

  /** The failure mode's answer (OPEN allows holding nothing, CLOSED refuses). */
  static LeaseResult failure(FailureMode mode, String error, int attempts) {
    return new LeaseResult(mode == FailureMode.OPEN, null, null, null, null, null, null, null,
        List.of(), Objects.requireNonNull(error), attempts);
  }

  LeaseResult withAttempts(int tries) {
    return new LeaseResult(allowed, leaseId, active, limit, expiresAt, ttl, retryAfterSeconds,
        policy, results, error, tries);
  }

  /** A lease from the sidecar's JSON object; IllegalArgumentException when it is not one. */
  static LeaseResult fromJson(Object doc) {
    if (!(doc instanceof Map<?, ?> map) || !(map.get("allowed") instanceof Boolean allowed)) {
      throw new IllegalArgumentException("expected an object with a boolean 'allowed'");
    }
    List<LeaseResult> results = new ArrayList<>();
    if (map.get("results") instanceof List<?> list) {
      for (Object item : list) {
        results.add(fromJson(item));
      }
    }
    Object ttl = map.get("ttl_seconds");
    return new LeaseResult(allowed, text(map, "lease_id"), whole(map, "active"),
        whole(map, "limit"), instant(map.get("expires_at")),
        ttl instanceof Number n ? Duration.ofNanos(Math.round(n.doubleValue() * 1e9)) : null,
        whole(map, "retry_after_seconds"), text(map, "policy"), results, null, 1);
  }

  private static Long whole(Map<?, ?> map, String name) {
    Object value = map.get(name);
    if (value == null || value instanceof Long) {
      return (Long) value;
    }
    throw new IllegalArgumentException("'" + name + "' is not a whole number: " + value);
  }

  private static String text(Map<?, ?> map, String name) {
    Object value = map.get(name);
    if (value == null || value instanceof String) {
      return (String) value;
    }
    throw new IllegalArgumentException("'" + name + "' is not a string: " + value);
  }

  private static Instant instant(Object value) {
    try {
      return value == null ? null : Instant.parse((String) value);
    } catch (ClassCastException | DateTimeParseException e) {
      throw new IllegalArgumentException("'expires_at' is not an RFC 3339 time: " + value, e);
    }
  }

  /** True when the lease holds its slots. */
  public boolean allowed() {
    return allowed;
  }

  /** The id to renew and release the lease with; empty when nothing is held. */
  public Optional<String> leaseId() {
    return Optional.ofNullable(leaseId);
  }

  /** The leases held after this call; empty when no concurrency limit applies. */
  public OptionalLong active() {
    return optional(active);
  }

  /** The rule's max; empty when no concurrency limit applies. */
  public OptionalLong limit() {
    return optional(limit);
  }

  /** When the lease expires unless renewed (the sidecar's clock). */
  public Optional<Instant> expiresAt() {
    return Optional.ofNullable(expiresAt);
  }

  /** How long the lease holds from this call unless renewed. */
  public Optional<Duration> ttl() {
    return Optional.ofNullable(ttl);
  }

  /** When refused: the longest wait for a holder's lease to expire (a release comes sooner). */
  public OptionalLong retryAfterSeconds() {
    return optional(retryAfterSeconds);
  }

  /** The rule's name, else the descriptor's keys joined by '.'. */
  public Optional<String> policy() {
    return Optional.ofNullable(policy);
  }

  /** One answer per descriptor, in order, when the lease was asked for descriptors. */
  public List<LeaseResult> results() {
    return results;
  }

  /** Why the failure mode answered instead of the sidecar; empty for a real answer. */
  public Optional<String> error() {
    return Optional.ofNullable(error);
  }

  /** The tries this answer took, the first included. */
  public int attempts() {
    return attempts;
  }

  private static OptionalLong optional(Long value) {
    return value == null ? OptionalLong.empty() : OptionalLong.of(value);
  }

  @Override
  public String toString() {
    return "LeaseResult{allowed=" + allowed + ", leaseId=" + leaseId + ", active=" + active
        + ", limit=" + limit + ", expiresAt=" + expiresAt + ", ttl=" + ttl
        + ", retryAfterSeconds=" + retryAfterSeconds + ", policy=" + policy + ", results="
        + results.size() + (error == null ? "" : ", error=" + error) + ", attempts=" + attempts
        + "}";
  }
}
