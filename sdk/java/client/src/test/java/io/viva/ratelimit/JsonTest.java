package io.viva.ratelimit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.math.BigInteger;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class JsonTest {

  @Test
  void readsTheSidecarsAnswer() {
    Object doc = Json.parse("{\"allowed\": true, \"limit\": 100, \"remaining\": 99, "
        + "\"reset_at\": \"2026-11-30T12:51:01Z\", \"reset_after_seconds\": 31, "
        + "\"retry_after_seconds\": null, \"window_seconds\": 60, \"policy\": \"identifier\"}");
    Map<String, Object> expected = new LinkedHashMap<>();
    expected.put("allowed", true);
    expected.put("limit", 100L);
    expected.put("remaining", 99L);
    expected.put("reset_at", "2026-11-30T12:51:01Z");
    expected.put("reset_after_seconds", 31L);
    expected.put("retry_after_seconds", null);
    expected.put("window_seconds", 60L);
    expected.put("policy", "identifier");
    assertEquals(expected, doc);
    assertEquals(List.copyOf(expected.keySet()),
        List.copyOf(((Map<?, ?>) doc).keySet()), "member order is kept");
  }

  @Test
  void readsEveryKindOfValue() {
    assertEquals(Arrays.asList(0L, -1L, 1.5, -2.5e-3, 1e10, true, false, null, "", List.of(),
        Map.of()), Json.parse(" [0,-1,1.5,-2.5E-3,1e10,true,false,null,\"\",[],{}] "));
    assertEquals(new BigInteger("123456789012345678901234567890"),
        Json.parse("123456789012345678901234567890"));
    assertEquals(Long.MAX_VALUE, Json.parse("9223372036854775807"));
    assertEquals(Long.MIN_VALUE, Json.parse("-9223372036854775808"));
  }

  @Test
  void readsEscapesAndUnicode() {
    assertEquals("a\"b\\c/d\b\f\n\r\té😀",
        Json.parse("\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\""));
    assertEquals("é😀 raw", Json.parse("\"é😀 raw\""));
  }

  @Test
  void aRepeatedNameKeepsTheLastValue() {
    assertEquals(Map.of("a", 2L), Json.parse("{\"a\": 1, \"a\": 2}"));
  }

  @ParameterizedTest
  @ValueSource(strings = {"", " ", "{", "[1,]", "{\"a\" 1}", "{\"a\":1,}", "[1 2]", "01", "-",
      "1.", "1e", ".5", "+1", "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\u12zz\"", "tru", "nul",
      "{} x", "\"tab\there\"", "{1: 2}", "NaN", "[\"a\"]]"})
  void refusesWhatIsNotJson(String text) {
    Json.JsonException e = assertThrows(Json.JsonException.class, () -> Json.parse(text));
    assertTrue(e.getMessage().startsWith("not JSON at offset "), e.getMessage());
  }

  @Test
  void capsTheNesting() {
    String deep = "[".repeat(Json.MAX_DEPTH + 1) + "]".repeat(Json.MAX_DEPTH + 1);
    assertThrows(Json.JsonException.class, () -> Json.parse(deep));
    String fine = "[".repeat(Json.MAX_DEPTH) + "]".repeat(Json.MAX_DEPTH);
    assertTrue(Json.parse(fine) instanceof List);
  }

  @Test
  void writesRequestBodies() {
    Map<String, Object> body = new LinkedHashMap<>();
    body.put("namespace", "api");
    Map<String, Object> entry = new LinkedHashMap<>();
    entry.put("key", "k");
    entry.put("value", "q\"\\\n\u0001");
    body.put("descriptors", List.of(List.of(entry)));
    body.put("hits", 2L);
    body.put("none", null);
    body.put("flag", true);
    assertEquals("{\"namespace\":\"api\",\"descriptors\":[[{\"key\":\"k\",\"value\":"
        + "\"q\\\"\\\\\\n\\u0001\"}]],\"hits\":2,\"none\":null,\"flag\":true}", Json.write(body));
  }

  @Test
  void escapesLoneSurrogatesButNotPairs() {
    assertEquals("\"\\ud800x😀\"", Json.write("\ud800x😀"));
    assertEquals("\ud800x😀", Json.parse(Json.write("\ud800x😀")));
  }

  @Test
  void refusesWhatJsonCannotHold() {
    assertThrows(IllegalArgumentException.class, () -> Json.write(Double.NaN));
    assertThrows(IllegalArgumentException.class, () -> Json.write(new Object()));
  }

  /** Random trees survive a write and a read unchanged (a property test, fixed seed). */
  @Test
  void roundTripsRandomValues() {
    Random random = new Random(20261201);
    for (int i = 0; i < 2000; i++) {
      Object value = randomValue(random, 0);
      assertEquals(value, Json.parse(Json.write(value)), () -> Json.write(value));
    }
  }

  private static Object randomValue(Random random, int depth) {
    int kind = random.nextInt(depth > 4 ? 5 : 7);
    switch (kind) {
      case 0:
        return null;
      case 1:
        return random.nextBoolean();
      case 2:
        return random.nextLong();
      case 3:
        return random.nextInt(1000) / 8.0 + 0.5;
      case 4:
        return randomString(random);
      case 5: {
        List<Object> list = new ArrayList<>();
        for (int n = random.nextInt(4); n > 0; n--) {
          list.add(randomValue(random, depth + 1));
        }
        return list;
      }
      default: {
        Map<String, Object> map = new LinkedHashMap<>();
        for (int n = random.nextInt(4); n > 0; n--) {
          map.put(randomString(random), randomValue(random, depth + 1));
        }
        return map;
      }
    }
  }

  private static String randomString(Random random) {
    StringBuilder out = new StringBuilder();
    for (int n = random.nextInt(6); n > 0; n--) {
      int pick = random.nextInt(5);
      if (pick == 0) {
        out.append((char) random.nextInt(0x20));
      } else if (pick == 1) {
        out.appendCodePoint(0x1F600 + random.nextInt(50));
      } else if (pick == 2) {
        out.append("\"\\/".charAt(random.nextInt(3)));
      } else {
        out.append((char) (0x20 + random.nextInt(0x7f - 0x20)));
      }
    }
    return out.toString();
  }

  @Test
  void nullIsNull() {
    assertNull(Json.parse("null"));
  }
}
