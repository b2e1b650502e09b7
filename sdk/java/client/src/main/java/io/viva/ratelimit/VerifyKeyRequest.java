package io.viva.ratelimit;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * What to verify: an API key, the {@code cost} charged to every limit checked (default 1; 0
 * checks without charging), the {@code limits} to check by name (default: all of the key's), the
 * {@code features} its plan must include (default: none), the {@code clientAddress} of whoever
 * presented the key (default: none). Immutable; {@link #toString()} never shows the key.
 *
 * <pre>{@code
 * VerifyKeyRequest.of(apiKey).cost(5).limits("per_hour").features("exports")
 *     .clientAddress(request.getRemoteAddr())
 * }</pre>
 */
public final class VerifyKeyRequest {
  /** The longest client address the sidecar accepts. */
  public static final int MAX_CLIENT_ADDRESS = 128;

  private final String key;
  private final long cost;
  private final List<String> limits;
  private final List<String> features;
  private final String clientAddress;

  private VerifyKeyRequest(String key, long cost, List<String> limits, List<String> features,
      String clientAddress) {
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
    this.clientAddress = checkClientAddress(clientAddress);
  }

  public static VerifyKeyRequest of(String key) {
    return new VerifyKeyRequest(key, 1, null, null, null);
  }

  public VerifyKeyRequest cost(long newCost) {
    return new VerifyKeyRequest(key, newCost, limits, features, clientAddress);
  }

  public VerifyKeyRequest limits(String... names) {
    return new VerifyKeyRequest(key, cost, names == null ? null : Arrays.asList(names),
        features, clientAddress);
  }

  public VerifyKeyRequest features(String... names) {
    return new VerifyKeyRequest(key, cost, limits,
        names == null ? null : Arrays.asList(names), clientAddress);
  }

  /**
   * Who presented the key: its address or a stable id, 1 to 128 printable ASCII characters
   * without spaces ({@code null}: none). The sidecar counts failed verifications per root key
   * and client address, and past its budget answers RATE_LIMITED without a lookup: with it, one
   * client guessing keys is refused alone; without it, every client of the application shares
   * the root key's budget. Throws {@link InvalidRequestException} naming {@code client_address}
   * for any other value.
   */
  public VerifyKeyRequest clientAddress(String address) {
    return new VerifyKeyRequest(key, cost, limits, features, address);
  }

  public long cost() {
    return cost;
  }

  /** The client address sent with the verification, if any. */
  public Optional<String> clientAddress() {
    return Optional.ofNullable(clientAddress);
  }

  private static String checkClientAddress(String address) {
    if (address == null) {
      return null;
    }
    String problem;
    if (address.isEmpty()) {
      problem = "is empty";
    } else if (!address.chars().allMatch(c -> c >= 0x21 && c <= 0x7e)) {
      problem = "has a space, a control character or a character outside ASCII";
    } else if (address.length() > MAX_CLIENT_ADDRESS) {
      problem = "has " + address.length() + " characters";
    } else {
      return address;
    }
    throw new InvalidRequestException("client_address " + problem + "; expected 1 to "
        + MAX_CLIENT_ADDRESS + " printable ASCII characters without spaces", "client_address");
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
    if (clientAddress != null) {
      body.put("client_address", clientAddress);
    }
    return Json.write(body);
  }

  @Override
  public String toString() {
    return "VerifyKeyRequest{key=<hidden>, cost=" + cost + ", limits=" + limits + ", features="
        + features + ", clientAddress=" + clientAddress + "}";
  }
}
