package io.viva.ratelimit;

import java.time.Instant;
import java.time.format.DateTimeParseException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.Set;

/**
 * The sidecar's answer for a request (and, when descriptors were sent, for each of them).
 *
 * <p>{@code limit()} is empty when no limit applies: a namespace without rules, an identifier
 * that matches none, an unlimited one. {@code error()} is present when the sidecar could not be
 * asked and the failure mode answered instead: {@code allowed()} is then true for
 * {@link FailureMode#OPEN} and false for {@link FailureMode#CLOSED}.
 */
public final class CheckResult {
  private final boolean allowed;
  private final Long limit;
  private final Long remaining;
  private final Instant resetAt;
  private final Long resetAfterSeconds;
  private final Long retryAfterSeconds;
  private final Long windowSeconds;
  private final String policy;
  private final List<CheckResult> results;
  private final String error;
  private final int attempts;

  private CheckResult(boolean allowed, Long limit, Long remaining, Instant resetAt,
      Long resetAfterSeconds, Long retryAfterSeconds, Long windowSeconds, String policy,
      List<CheckResult> results, String error, int attempts) {
    this.allowed = allowed;
    this.limit = limit;
    this.remaining = remaining;
    this.resetAt = resetAt;
    this.resetAfterSeconds = resetAfterSeconds;
    this.retryAfterSeconds = retryAfterSeconds;
    this.windowSeconds = windowSeconds;
    this.policy = policy;
    this.results = List.copyOf(results);
    this.error = error;
    this.attempts = attempts;
  }

  /** The answer of a failure mode (OPEN or CLOSED) when the sidecar is out of reach. */
  static CheckResult failure(FailureMode mode, String error, int attempts) {
    return new CheckResult(mode == FailureMode.OPEN, null, null, null, null, null, null, null,
        List.of(), Objects.requireNonNull(error), attempts);
  }

  /** The same answer, reached after {@code tries} attempts. */
  CheckResult withAttempts(int tries) {
    return new CheckResult(allowed, limit, remaining, resetAt, resetAfterSeconds,
        retryAfterSeconds, windowSeconds, policy, results, error, tries);
  }

  /** A result from the sidecar's /v1/check or /v1/report JSON object. */
  static CheckResult fromJson(Object doc) {
    if (!(doc instanceof Map<?, ?> map) || !(map.get("allowed") instanceof Boolean allowed)) {
      throw new IllegalArgumentException("expected an object with a boolean 'allowed'");
    }
    List<CheckResult> results = new ArrayList<>();
    if (map.get("results") instanceof List<?> list) {
      for (Object item : list) {
        results.add(fromJson(item));
      }
    }
    return new CheckResult(allowed, whole(map, "limit"), whole(map, "remaining"),
        instant(map.get("reset_at")), whole(map, "reset_after_seconds"),
        whole(map, "retry_after_seconds"), whole(map, "window_seconds"),
        text(map, "policy"), results, null, 1);
  }

  private static Long whole(Map<?, ?> map, String name) {
    Object value = map.get(name);
    if (value == null) {
      return null;
    }
    if (value instanceof Long n) {
      return n;
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
    if (value == null) {
      return null;
    }
    try {
      return Instant.parse((String) value);
    } catch (ClassCastException | DateTimeParseException e) {
      throw new IllegalArgumentException("'reset_at' is not an RFC 3339 time: " + value, e);
    }
  }

  /** True when the request may go ahead. */
  public boolean allowed() {
    return allowed;
  }

  /** Requests per window of the limit that decided; empty when no limit applies. */
  public OptionalLong limit() {
    return optional(limit);
  }

  /** What is left of the limit after this request. */
  public OptionalLong remaining() {
    return optional(remaining);
  }

  /** When the window resets (or the bucket is full again). */
  public Optional<Instant> resetAt() {
    return Optional.ofNullable(resetAt);
  }

  /** Whole seconds from now until {@link #resetAt()}. */
  public OptionalLong resetAfterSeconds() {
    return optional(resetAfterSeconds);
  }

  /** When refused: seconds until a retry can succeed. */
  public OptionalLong retryAfterSeconds() {
    return optional(retryAfterSeconds);
  }

  /** The limit's window in seconds. */
  public OptionalLong windowSeconds() {
    return optional(windowSeconds);
  }

  /** The rule's name, else the descriptor's keys joined by '.'. */
  public Optional<String> policy() {
    return Optional.ofNullable(policy);
  }

  /** One result per descriptor, in order, when the request sent descriptors; else empty. */
  public List<CheckResult> results() {
    return results;
  }

  /** Why the failure mode answered instead of the sidecar; empty for a real answer. */
  public Optional<String> error() {
    return Optional.ofNullable(error);
  }

  /** The tries this answer took, the first included (more than 1 after refused connections). */
  public int attempts() {
    return attempts;
  }

  /** The response headers the sidecar sends with this answer (every header family). */
  public List<Map.Entry<String, String>> headers() {
    return RateLimitHeaders.of(this, HeaderFamily.ALL);
  }

  /** The response headers of the chosen families, in the sidecar's order. */
  public List<Map.Entry<String, String>> headers(Set<HeaderFamily> families) {
    return RateLimitHeaders.of(this, families);
  }

  Long rawLimit() {
    return limit;
  }

  Long rawRemaining() {
    return remaining;
  }

  Long rawResetAfter() {
    return resetAfterSeconds;
  }

  Long rawRetryAfter() {
    return retryAfterSeconds;
  }

  Long rawWindow() {
    return windowSeconds;
  }

  String rawPolicy() {
    return policy;
  }

  private static OptionalLong optional(Long value) {
    return value == null ? OptionalLong.empty() : OptionalLong.of(value);
  }

  @Override
  public String toString() {
    return "CheckResult{allowed=" + allowed + ", limit=" + limit + ", remaining=" + remaining
        + ", resetAt=" + resetAt + ", resetAfterSeconds=" + resetAfterSeconds
        + ", retryAfterSeconds=" + retryAfterSeconds + ", windowSeconds=" + windowSeconds
        + ", policy=" + policy + ", results=" + results.size()
        + (error == null ? "" : ", error=" + error) + ", attempts=" + attempts + "}";
  }
}
