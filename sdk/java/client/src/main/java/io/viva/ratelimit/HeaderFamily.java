package io.viva.ratelimit;

import java.util.EnumSet;
import java.util.Locale;
import java.util.Set;

/** The families of rate-limit response headers, named as the sidecar's VIVA_RATELIMIT_HEADERS. */
public enum HeaderFamily {
  /** {@code RateLimit-Policy} and {@code RateLimit} (IETF draft-ietf-httpapi-ratelimit-headers). */
  IETF("ietf"),
  /** {@code X-RateLimit-Limit}, {@code X-RateLimit-Remaining}, {@code X-RateLimit-Reset}. */
  X("x"),
  /** {@code Retry-After} on a refusal. */
  RETRY_AFTER("retry-after");

  public static final Set<HeaderFamily> ALL = Set.copyOf(EnumSet.allOf(HeaderFamily.class));

  private final String label;

  HeaderFamily(String label) {
    this.label = label;
  }

  /** The family's name: {@code ietf}, {@code x} or {@code retry-after}. */
  public String label() {
    return label;
  }

  /** The family named {@code label} (any case); the message lists the names expected. */
  public static HeaderFamily fromLabel(String label) {
    String wanted = label.trim().toLowerCase(Locale.ROOT);
    for (HeaderFamily family : values()) {
      if (family.label.equals(wanted)) {
        return family;
      }
    }
    throw new IllegalArgumentException("'" + label + "' is not a header family; expected one "
        + "of ietf, x, retry-after");
  }
}
