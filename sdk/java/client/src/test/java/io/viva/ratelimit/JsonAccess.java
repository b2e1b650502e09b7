package io.viva.ratelimit;

/** The client's JSON reader, for the test harness in other packages and modules. */
public final class JsonAccess {
  private JsonAccess() {}

  public static Object parse(String text) {
    return Json.parse(text);
  }

  public static String write(Object value) {
    return Json.write(value);
  }
}
