package io.viva.ratelimit.testing.contract;

import java.math.BigDecimal;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * The contract's matching rules: a JSON literal must be equal; {@code {"between": [lo, hi]}} a
 * number in that closed range (a header value is parsed as an integer first);
 * {@code {"matches": "re"}} a string the expression finds; {@code {"absent": true}} a header that
 * is not there; lists element by element with the same length; objects key by key.
 */
final class Expect {
  private Expect() {}

  static void match(Object expected, Object actual, String where, List<String> problems) {
    if (expected instanceof Map<?, ?> map && map.size() == 1 && map.containsKey("between")) {
      between((List<?>) map.get("between"), actual, where, problems);
    } else if (expected instanceof Map<?, ?> map && map.size() == 1
        && map.containsKey("matches")) {
      if (!(actual instanceof String s) || !Pattern.compile((String) map.get("matches"))
          .matcher(s).find()) {
        problems.add(where + ": " + show(actual) + " does not match " + map.get("matches"));
      }
    } else if (expected instanceof Map<?, ?> map && map.size() == 1
        && map.containsKey("absent")) {
      problems.add(where + ": 'absent' is for headers only");
    } else if (expected instanceof Map<?, ?> map) {
      if (!(actual instanceof Map<?, ?> got)) {
        problems.add(where + ": expected an object, got " + show(actual));
        return;
      }
      for (Map.Entry<?, ?> e : map.entrySet()) {
        if (!got.containsKey(e.getKey())) {
          problems.add(where + "." + e.getKey() + ": no such field in the SDK's result");
        } else {
          match(e.getValue(), got.get(e.getKey()), where + "." + e.getKey(), problems);
        }
      }
    } else if (expected instanceof List<?> list) {
      if (!(actual instanceof List<?> got) || got.size() != list.size()) {
        problems.add(where + ": expected " + list.size() + " items, got " + show(actual));
        return;
      }
      for (int i = 0; i < list.size(); i++) {
        match(list.get(i), got.get(i), where + "[" + i + "]", problems);
      }
    } else if (!literalEquals(expected, actual)) {
      problems.add(where + ": expected " + show(expected) + ", got " + show(actual));
    }
  }

  /** Headers: name (any case) → matcher; {@code actual} keys are lower-case. */
  static void headers(Map<String, Object> expected, Map<String, String> actual, String where,
      List<String> problems) {
    for (Map.Entry<String, Object> e : expected.entrySet()) {
      String name = e.getKey().toLowerCase(Locale.ROOT);
      String value = actual.get(name);
      String at = where + "[" + e.getKey() + "]";
      if (e.getValue() instanceof Map<?, ?> m && m.size() == 1 && m.containsKey("absent")) {
        if (Boolean.TRUE.equals(m.get("absent")) && value != null) {
          problems.add(at + ": expected absent, got " + show(value));
        }
      } else if (value == null) {
        problems.add(at + ": missing; headers are " + actual);
      } else if (e.getValue() instanceof Map<?, ?> m && m.containsKey("between")) {
        Object number;
        try {
          number = Long.parseLong(value.trim());
        } catch (NumberFormatException nf) {
          number = value;
        }
        match(e.getValue(), number, at, problems);
      } else {
        match(e.getValue(), value, at, problems);
      }
    }
  }

  private static void between(List<?> range, Object actual, String where, List<String> problems) {
    if (!(actual instanceof Number n)) {
      problems.add(where + ": expected a number in " + range + ", got " + show(actual));
      return;
    }
    BigDecimal value = decimal(n);
    if (value.compareTo(decimal((Number) range.get(0))) < 0
        || value.compareTo(decimal((Number) range.get(1))) > 0) {
      problems.add(where + ": " + n + " is not in " + range);
    }
  }

  private static boolean literalEquals(Object expected, Object actual) {
    if (expected instanceof Number a && actual instanceof Number b) {
      return decimal(a).compareTo(decimal(b)) == 0;
    }
    return expected == null ? actual == null : expected.equals(actual);
  }

  private static BigDecimal decimal(Number n) {
    return new BigDecimal(n.toString());
  }

  private static String show(Object value) {
    return value instanceof String s ? "\"" + s + "\"" : String.valueOf(value);
  }
}
