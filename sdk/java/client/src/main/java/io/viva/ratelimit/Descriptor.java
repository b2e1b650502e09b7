package io.viva.ratelimit;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * One descriptor: entries (key, value) in order, as the rules match them, e.g. {@code route=/cart}
 * then {@code method=POST}. Used by {@link CheckRequest#ofDescriptors} to check several at once.
 */
public record Descriptor(List<Entry> entries) {

  /** One key and value of a descriptor. */
  public record Entry(String key, String value) {
    public Entry {
      // Only null is refused here: the sidecar checks the text and names the entry's place
      // (descriptors[0][1].key), which this record does not know.
      Objects.requireNonNull(key, "descriptor entry key");
      Objects.requireNonNull(value, "descriptor entry value");
    }
  }

  public Descriptor {
    if (entries == null || entries.isEmpty()) {
      throw new InvalidRequestException("a descriptor needs at least one entry", "descriptors");
    }
    entries = List.copyOf(entries);
  }

  /** {@code Descriptor.of("route", "/cart", "method", "POST")}: keys and values alternating. */
  public static Descriptor of(String key, String value, String... more) {
    if (more.length % 2 != 0) {
      throw new IllegalArgumentException("Descriptor.of takes keys and values in pairs");
    }
    List<Entry> entries = new ArrayList<>();
    entries.add(new Entry(key, value));
    for (int i = 0; i < more.length; i += 2) {
      entries.add(new Entry(more[i], more[i + 1]));
    }
    return new Descriptor(entries);
  }

  /** The entries of {@code map} in its iteration order (use a LinkedHashMap for an order). */
  public static Descriptor of(Map<String, String> map) {
    List<Entry> entries = new ArrayList<>();
    map.forEach((k, v) -> entries.add(new Entry(k, v)));
    return new Descriptor(entries);
  }

  /** A request field that must be a non-empty string; the exception names it. */
  static void requireText(String value, String field) {
    if (value == null || value.isEmpty()) {
      throw new InvalidRequestException(field + " must be a non-empty string", field);
    }
  }
}
