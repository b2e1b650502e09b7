package io.viva.ratelimit.testing;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Rules of the client and middleware tests: hour windows, so that no window ends during a test
 * on a slow machine.
 */
public final class TestRules {
  private TestRules() {}

  public static final String API_REQUESTS = String.join("\n",
      "domain: api_requests",
      "descriptors:",
      "  - key: identifier",
      "    rate_limit: {unit: hour, requests_per_unit: 3}",
      "  - key: identifier",
      "    value: vip",
      "    rate_limit: {unlimited: true}",
      "");

  public static final String SHOP = String.join("\n",
      "domain: shop",
      "descriptors:",
      "  - key: user",
      "    rate_limit: {unit: hour, requests_per_unit: 5, name: per_user}",
      "  - key: route",
      "    descriptors:",
      "      - key: method",
      "        rate_limit: {unit: hour, requests_per_unit: 2}",
      "");

  /** A fresh temporary directory holding api.yaml and shop.yaml. */
  public static Path write() {
    try {
      Path dir = Files.createTempDirectory("viva-rules-");
      Files.writeString(dir.resolve("api.yaml"), API_REQUESTS);
      Files.writeString(dir.resolve("shop.yaml"), SHOP);
      return dir;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }
}
