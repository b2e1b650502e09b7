package io.viva.ratelimit;

import java.time.Instant;
import java.time.format.DateTimeParseException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.OptionalLong;

/**
 * The verdict on an API key; it never holds the key itself.
 *
 * <p>{@link #code()} is empty only when the sidecar could not answer: {@link #error()} then says
 * why and {@link #valid()} is the verify failure mode's answer (false unless the client was built
 * with {@code verifyFailureMode(FailureMode.OPEN)}). {@link #keyId()}, {@link #customerId()} and
 * {@link #plan()} are empty for {@code NOT_FOUND}; {@link #remaining()} and {@link #resetAt()}
 * (the tightest limit's) are empty when no limit was checked (the key was refused before, or
 * {@code FORBIDDEN}).
 */
public final class KeyVerification {
  private final boolean valid;
  private final VerifyCode code;
  private final String keyId;
  private final String customerId;
  private final String plan;
  private final List<String> features;
  private final Long remaining;
  private final Instant resetAt;
  private final List<VerifiedLimit> limits;
  private final String error;
  private final int attempts;

  private KeyVerification(boolean valid, VerifyCode code, String keyId, String customerId,
      String plan, List<String> features, Long remaining, Instant resetAt,
      List<VerifiedLimit> limits, String error, int attempts) {
    this.valid = valid;
    this.code = code;
    this.keyId = keyId;
    this.customerId = customerId;
    this.plan = plan;
    this.features = List.copyOf(features);
    this.remaining = remaining;
    this.resetAt = resetAt;
    this.limits = List.copyOf(limits);
    this.error = error;
    this.attempts = attempts;
  }

  /** The verify failure mode's answer (OPEN or CLOSED) when the sidecar is out of reach. */
  static KeyVerification failure(FailureMode mode, String error, int attempts) {
    return new KeyVerification(mode == FailureMode.OPEN, null, null, null, null, List.of(), null,
        null, List.of(), Objects.requireNonNull(error), attempts);
  }

  /** The verdict from the sidecar's /v1/keys/verify JSON; IllegalArgumentException if not one. */
  static KeyVerification fromJson(Object doc) {
    if (!(doc instanceof Map<?, ?> map) || !(map.get("valid") instanceof Boolean valid)) {
      throw new IllegalArgumentException("expected an object with a boolean 'valid'");
    }
    VerifyCode code;
    try {
      code = VerifyCode.valueOf(String.valueOf(map.get("code")));
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException("'code' is not one of " + List.of(VerifyCode.values()));
    }
    List<String> features = new ArrayList<>();
    if (map.get("features") instanceof List<?> list) {
      list.forEach(f -> features.add(String.valueOf(f)));
    }
    List<VerifiedLimit> limits = new ArrayList<>();
    if (map.get("limits") instanceof List<?> list) {
      for (Object item : list) {
        limits.add(limit(item));
      }
    }
    return new KeyVerification(valid, code, text(map, "key_id"), text(map, "customer_id"),
        text(map, "plan"), features, whole(map, "remaining"), instant(map.get("reset_at")), limits,
        null, 1);
  }

  private static VerifiedLimit limit(Object item) {
    if (!(item instanceof Map<?, ?> m) || !(m.get("name") instanceof String name)
        || !(m.get("exceeded") instanceof Boolean exceeded)
        || whole(m, "limit") == null || whole(m, "remaining") == null) {
      throw new IllegalArgumentException("a limit without name, limit, remaining or exceeded");
    }
    return new VerifiedLimit(name, whole(m, "limit"), whole(m, "remaining"),
        instant(m.get("reset_at")), exceeded);
  }

  private static Long whole(Map<?, ?> map, String name) {
    Object value = map.get(name);
    if (value == null || value instanceof Long) {
      return (Long) value;
    }
    throw new IllegalArgumentException("'" + name + "' is not a whole number");
  }

  private static String text(Map<?, ?> map, String name) {
    Object value = map.get(name);
    if (value == null || value instanceof String) {
      return (String) value;
    }
    throw new IllegalArgumentException("'" + name + "' is not a string");
  }

  private static Instant instant(Object value) {
    if (value == null) {
      return null;
    }
    try {
      return Instant.parse((String) value);
    } catch (ClassCastException | DateTimeParseException e) {
      throw new IllegalArgumentException("'reset_at' is not an RFC 3339 time", e);
    }
  }

  /** True when the key may be used for this request. */
  public boolean valid() {
    return valid;
  }

  /** The verdict; empty when the sidecar could not answer. */
  public Optional<VerifyCode> code() {
    return Optional.ofNullable(code);
  }

  public Optional<String> keyId() {
    return Optional.ofNullable(keyId);
  }

  public Optional<String> customerId() {
    return Optional.ofNullable(customerId);
  }

  public Optional<String> plan() {
    return Optional.ofNullable(plan);
  }

  /** The features of the key's plan. */
  public List<String> features() {
    return features;
  }

  /** What is left of the tightest limit checked. */
  public OptionalLong remaining() {
    return remaining == null ? OptionalLong.empty() : OptionalLong.of(remaining);
  }

  /** When the tightest limit checked resets. */
  public Optional<Instant> resetAt() {
    return Optional.ofNullable(resetAt);
  }

  /** One entry per limit checked, in order. */
  public List<VerifiedLimit> limits() {
    return limits;
  }

  /** Why the verify failure mode answered instead of the sidecar; empty for a real verdict. */
  public Optional<String> error() {
    return Optional.ofNullable(error);
  }

  /** The tries the failure mode's answer took (1 for a real verdict). */
  public int attempts() {
    return attempts;
  }

  @Override
  public String toString() {
    return "KeyVerification{valid=" + valid + ", code=" + code + ", keyId=" + keyId
        + ", customerId=" + customerId + ", plan=" + plan + ", features=" + features
        + ", remaining=" + remaining + ", resetAt=" + resetAt + ", limits=" + limits
        + (error == null ? "" : ", error=" + error + ", attempts=" + attempts) + "}";
  }
}
