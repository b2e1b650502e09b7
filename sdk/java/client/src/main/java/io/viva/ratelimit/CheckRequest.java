package io.viva.ratelimit;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * What to ask the sidecar: charge {@code hits} to an {@code identifier} (or to several
 * {@code descriptors}) in a {@code namespace}, a rules domain. {@code hits = 0} peeks without
 * charging. Mistakes that cannot be right are refused here, before any call, with an
 * {@link InvalidRequestException} naming the field.
 */
public record CheckRequest(String namespace, String identifier, List<Descriptor> descriptors,
    long hits) {

  public CheckRequest {
    Descriptor.requireText(namespace, "namespace");
    if (hits < 0) {
      throw new InvalidRequestException("hits must be a whole number >= 0, not " + hits, "hits");
    }
    if (descriptors != null) {
      if (identifier != null) {
        throw new InvalidRequestException("pass either an identifier or descriptors, not both",
            "descriptors");
      }
      if (descriptors.isEmpty()) {
        throw new InvalidRequestException("descriptors must not be empty", "descriptors");
      }
      descriptors = List.copyOf(descriptors);
    } else {
      Descriptor.requireText(identifier, "identifier");
    }
  }

  /** Charge one hit to {@code identifier} in {@code namespace}. */
  public static CheckRequest of(String identifier, String namespace) {
    return new CheckRequest(namespace, identifier, null, 1);
  }

  public static CheckRequest of(String identifier, String namespace, long hits) {
    return new CheckRequest(namespace, identifier, null, hits);
  }

  /** Several descriptors at once; the result has one entry per descriptor in {@code results()}. */
  public static CheckRequest ofDescriptors(String namespace, long hits, List<Descriptor> descriptors) {
    return new CheckRequest(namespace, null, descriptors, hits);
  }

  public static CheckRequest ofDescriptors(String namespace, long hits, Descriptor... descriptors) {
    return ofDescriptors(namespace, hits, List.of(descriptors));
  }

  /** The same request with other hits. */
  public CheckRequest withHits(long newHits) {
    return new CheckRequest(namespace, identifier, descriptors, newHits);
  }

  /** The JSON body of /v1/check and /v1/report. */
  String toJson() {
    return Json.write(body());
  }

  /** The body's fields, in order: namespace, identifier or descriptors, hits. */
  Map<String, Object> body() {
    Map<String, Object> body = new LinkedHashMap<>();
    body.put("namespace", namespace);
    if (descriptors != null) {
      List<Object> list = new ArrayList<>();
      for (Descriptor d : descriptors) {
        List<Object> entries = new ArrayList<>();
        for (Descriptor.Entry e : d.entries()) {
          Map<String, Object> entry = new LinkedHashMap<>();
          entry.put("key", e.key());
          entry.put("value", e.value());
          entries.add(entry);
        }
        list.add(entries);
      }
      body.put("descriptors", list);
    } else {
      body.put("identifier", identifier);
    }
    body.put("hits", hits);
    return body;
  }
}
