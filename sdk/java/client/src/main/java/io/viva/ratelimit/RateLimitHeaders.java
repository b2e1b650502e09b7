package io.viva.ratelimit;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.StringJoiner;

/**
 * Rate-limit response headers from a {@link CheckResult}, exactly as the sidecar writes them.
 *
 * <ul>
 *   <li>{@code RateLimit-Policy: "<policy>";q=<limit>;w=<window>} and
 *       {@code RateLimit: "<policy>";r=<remaining>;t=<reset>}: IETF Structured Field Lists, one
 *       member per limited descriptor;
 *   <li>{@code X-RateLimit-Limit}, {@code X-RateLimit-Remaining}, {@code X-RateLimit-Reset}
 *       (seconds from now), for the request as a whole;
 *   <li>{@code Retry-After} (seconds) when refused.
 * </ul>
 */
final class RateLimitHeaders {
  private RateLimitHeaders() {}

  static List<Map.Entry<String, String>> of(CheckResult result, Set<HeaderFamily> families) {
    List<Map.Entry<String, String>> out = new ArrayList<>();
    List<CheckResult> members = result.results().isEmpty() ? List.of(result) : result.results();
    List<CheckResult> limited = members.stream().filter(r -> r.rawLimit() != null).toList();
    if (families.contains(HeaderFamily.IETF) && !limited.isEmpty()) {
      StringJoiner policy = new StringJoiner(", ");
      StringJoiner state = new StringJoiner(", ");
      for (CheckResult r : limited) {
        String name = sfString(r.rawPolicy());
        policy.add(name + ";q=" + r.rawLimit() + ";w=" + r.rawWindow());
        state.add(name + ";r=" + r.rawRemaining() + ";t=" + r.rawResetAfter());
      }
      out.add(Map.entry("RateLimit-Policy", policy.toString()));
      out.add(Map.entry("RateLimit", state.toString()));
    }
    if (families.contains(HeaderFamily.X) && result.rawLimit() != null) {
      out.add(Map.entry("X-RateLimit-Limit", String.valueOf(result.rawLimit())));
      out.add(Map.entry("X-RateLimit-Remaining", String.valueOf(result.rawRemaining())));
      out.add(Map.entry("X-RateLimit-Reset", String.valueOf(result.rawResetAfter())));
    }
    if (families.contains(HeaderFamily.RETRY_AFTER) && result.rawRetryAfter() != null) {
      out.add(Map.entry("Retry-After", String.valueOf(result.rawRetryAfter())));
    }
    return out;
  }

  /** An RFC 8941 String: printable ASCII, backslash and double quote escaped. */
  static String sfString(String text) {
    String source = text == null ? "default" : text;
    StringBuilder out = new StringBuilder("\"");
    for (int i = 0; i < source.length(); i++) {
      char c = source.charAt(i);
      if (c < 0x20 || c > 0x7e) {
        out.append('_');
      } else {
        if (c == '\\' || c == '"') {
          out.append('\\');
        }
        out.append(c);
      }
    }
    return out.append('"').toString();
  }
}
