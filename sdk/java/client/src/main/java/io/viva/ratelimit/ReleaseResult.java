package io.viva.ratelimit;

import java.util.Map;
import java.util.Optional;
import java.util.OptionalLong;

/**
 * The answer to a release: {@link #released()} when the sidecar freed the lease's slots (false
 * when the lease was gone already or, with {@link #error()}, when the sidecar could not be
 * asked: the lease then expires with its time to live); {@code active} and {@code limit} after
 * it.
 */
public final class ReleaseResult {
  private final boolean released;
  private final Long active;
  private final Long limit;
  private final String error;
  private final int attempts;

  ReleaseResult(boolean released, Long active, Long limit, String error, int attempts) {
    this.released = released;
    this.active = active;
    this.limit = limit;
    this.error = error;
    this.attempts = attempts;
  }

  /** The release from the sidecar's JSON object; IllegalArgumentException when it is not one. */
  static ReleaseResult fromJson(Object doc, int attempts) {
    if (!(doc instanceof Map<?, ?> map) || !(map.get("released") instanceof Boolean freed)) {
      throw new IllegalArgumentException("expected an object with a boolean 'released'");
    }
    return new ReleaseResult(freed, whole(map.get("active")), whole(map.get("limit")), null,
        attempts);
  }

  private static Long whole(Object value) {
    if (value == null || value instanceof Long) {
      return (Long) value;
    }
    throw new IllegalArgumentException("not a whole number: " + value);
  }

  /** True when the sidecar freed the lease's slots. */
  public boolean released() {
    return released;
  }

  /** The leases held after the release; empty when the sidecar did not say. */
  public OptionalLong active() {
    return active == null ? OptionalLong.empty() : OptionalLong.of(active);
  }

  /** The rule's max; empty when the sidecar did not say. */
  public OptionalLong limit() {
    return limit == null ? OptionalLong.empty() : OptionalLong.of(limit);
  }

  /** Why the sidecar could not be asked; empty for a real answer. */
  public Optional<String> error() {
    return Optional.ofNullable(error);
  }

  /** The tries this answer took, the first included. */
  public int attempts() {
    return attempts;
  }

  @Override
  public String toString() {
    return "ReleaseResult{released=" + released + ", active=" + active + ", limit=" + limit
        + (error == null ? "" : ", error=" + error) + ", attempts=" + attempts + "}";
  }
}
