package io.viva.ratelimit;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * What to verify: an API key, the {@code cost} charged to every limit checked (default 1; 0
 * checks without charging), the {@code limits} to check by name (default: all of the key's), the
 * {@code features} its plan must include (default: none). Immutable; {@link #toString()} never
 * shows the key.
 *
 * <pre>{@code
 * VerifyKeyRequest.of(apiKey).cost(5).limits("per_hour").features("exports")
 * }</pre>
 */
public final class VerifyKeyRequest {
  private final String key;
  private final long cost;
  private final List<String> limits;
  private final List<String> features;

  private VerifyKeyRequest(String key, long cost, List<String> limits, List<String> features) {
    if (key == null || key.isEmpty()) {
      throw new InvalidRequestException("key must be a non-empty string", "key");
    }
    if (cost < 0) {
      throw new InvalidRequestException("cost must be a whole number >= 0, not " + cost, "cost");
    }
    this.key = key;
    this.cost = cost;
    this.limits = names(limits, "limits");
    this.features = names(features, "features");
  }

  public static VerifyKeyRequest of(String key) {
    return new VerifyKeyRequest(key, 1, null, null);
  }

  public VerifyKeyRequest cost(long newCost) {
    return new VerifyKeyRequest(key, newCost, limits, features);
  }

  public VerifyKeyRequest limits(String... names) {
    return new VerifyKeyRequest(key, cost, names == null ? null : Arrays.asList(names),
        features);
  }

  public VerifyKeyRequest features(String... names) {
    return new VerifyKeyRequest(key, cost, limits,
        names == null ? null : Arrays.asList(names));
  }

  public long cost() {
    return cost;
  }

  private static List<String> names(List<String> names, String field) {
    if (names == null) {
      return null;
    }
    for (String name : names) {
      if (name == null) {
        throw new InvalidRequestException(field + " must not contain null", field);
      }
    }
    return List.copyOf(names);
  }

  /** The JSON body of /v1/keys/verify. */
  String toJson() {
    Map<String, Object> body = new LinkedHashMap<>();
    body.put("key", key);
    body.put("cost", cost);
    if (limits != null) {
      body.put("limits", limits);
    }
    if (features != null) {
      body.put("features", features);
    }
    return Json.write(body);
  }

  @Override
  public String toString() {
    return "VerifyKeyRequest{key=<hidden>, cost=" + cost + ", limits=" + limits + ", features="
        + features + "}";
  }
}
