package io.viva.ratelimit.testing.contract;

import io.viva.ratelimit.JsonAccess;
import io.viva.ratelimit.testing.Tools;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.UnaryOperator;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The shared SDK contract, {@code sdk/contract/}: contract.json and its vector files, read as
 * plain JSON values. Every key is checked against what this runner knows, so that a vector using
 * something new fails here instead of being skipped.
 */
public final class Contract {
  public static final int VERSION = 4;

  static final Set<String> VECTOR_KEYS =
      Set.of("name", "about", "target", "window_s", "client", "middleware", "setup", "steps");
  static final Set<String> CLIENT_STEP_KEYS = Set.of("call", "namespace", "identifier",
      "descriptors", "hits", "key", "cost", "limits", "features", "client_address", "lease_id",
      "ttl_ms", "save", "wait_ms", "client", "expect");
  static final Set<String> MIDDLEWARE_STEP_KEYS = Set.of("request", "client", "middleware",
      "expect");
  static final Set<String> CLIENT_SETTINGS = Set.of("endpoint", "timeout_ms", "attempts",
      "backoff_ms", "max_backoff_ms", "failure_mode", "root_key", "verify_failure_mode");
  static final Set<String> SETUP_KEYS = Set.of("method", "path", "body", "save");
  static final Set<String> MIDDLEWARE_SETTINGS = Set.of("namespace", "identifier_header", "hits");
  static final Set<String> TARGETS = Set.of("sidecar", "store_down", "full", "full_budget",
      "closed_port", "silent_server");

  final Path root;
  final Map<String, Object> doc;
  final List<Vector> vectors;

  /** One vector of one file. */
  public record Vector(String file, String name, Map<String, Object> doc) {
    public String target() {
      return (String) doc.get("target");
    }

    @SuppressWarnings("unchecked")
    public List<Map<String, Object>> steps() {
      return (List<Map<String, Object>>) doc.get("steps");
    }

    /** True when every step is a middleware step (has "request"), false when every one is a
     *  client step (has "call"); a vector mixing them is refused. */
    public boolean isMiddleware() {
      boolean any = steps().stream().anyMatch(s -> s.containsKey("request"));
      boolean all = steps().stream().allMatch(s -> s.containsKey("request"));
      if (any != all) {
        throw new IllegalStateException(this + ": mixes client and middleware steps");
      }
      return all;
    }

    @Override
    public String toString() {
      return file + "/" + name;
    }
  }

  private Contract(Path root, Map<String, Object> doc, List<Vector> vectors) {
    this.root = root;
    this.doc = doc;
    this.vectors = vectors;
  }

  /** The repository's sdk/contract. */
  public static Contract load() {
    Path root = Tools.repositoryRoot().resolve("sdk/contract");
    Map<String, Object> doc = object(read(root.resolve("contract.json")), "contract.json");
    if (!Long.valueOf(VERSION).equals(doc.get("version"))) {
      throw new IllegalStateException("contract.json version " + doc.get("version")
          + "; this runner knows version " + VERSION);
    }
    List<Vector> vectors = new ArrayList<>();
    for (Object file : (List<?>) doc.get("vector_files")) {
      Map<String, Object> vectorFile = object(read(root.resolve((String) file)), (String) file);
      for (Object v : (List<?>) vectorFile.get("vectors")) {
        Map<String, Object> vector = object(v, file + " vector");
        checkKeys(vector, VECTOR_KEYS, file + "/" + vector.get("name"));
        if (!TARGETS.contains((String) vector.get("target"))) {
          throw new IllegalStateException(file + "/" + vector.get("name") + ": unknown target "
              + vector.get("target"));
        }
        if (vector.containsKey("setup") && !"full".equals(vector.get("target"))) {
          throw new IllegalStateException(file + "/" + vector.get("name")
              + ": setup needs the target full");
        }
        vectors.add(new Vector((String) file, (String) vector.get("name"), vector));
      }
    }
    return new Contract(root, doc, vectors);
  }

  public List<Vector> vectors() {
    return vectors;
  }

  /** The sidecar profiles a vector of {@code target} runs on (none: once, without a sidecar). */
  public List<String> profiles(String target) {
    List<String> names = new ArrayList<>();
    for (Object name : (List<?>) object(doc.get("targets"), "targets").get(target)) {
      names.add((String) name);
    }
    return names;
  }

  Map<String, Object> sidecar() {
    return object(doc.get("sidecar"), "sidecar");
  }

  /** Defaults, then the vector's settings, then the step's, for "client" or "middleware". */
  static Map<String, Object> settings(Contract contract, String kind, Map<String, Object> vector,
      Map<String, Object> step) {
    Map<String, Object> merged = new LinkedHashMap<>(object(contract.doc.get(kind + "_defaults"),
        kind + "_defaults"));
    for (Map<String, Object> layer : List.of(vector, step)) {
      if (layer.get(kind) != null) {
        merged.putAll(object(layer.get(kind), kind));
      }
    }
    checkKeys(merged, kind.equals("client") ? CLIENT_SETTINGS : MIDDLEWARE_SETTINGS, kind);
    return merged;
  }

  static void checkKeys(Map<String, Object> map, Set<String> known, String where) {
    for (String key : map.keySet()) {
      if (!known.contains(key)) {
        throw new IllegalStateException(where + ": unknown key '" + key + "'; this runner knows "
            + known);
      }
    }
  }

  @SuppressWarnings("unchecked")
  static Map<String, Object> object(Object value, String what) {
    if (!(value instanceof Map)) {
      throw new IllegalStateException(what + " is not a JSON object");
    }
    return (Map<String, Object>) value;
  }

  static Object read(Path file) {
    try {
      return JsonAccess.parse(Files.readString(file));
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** {@code ${run}} replaced by {@code token} in every string of {@code value}. */
  static Object withRun(Object value, String token) {
    return mapStrings(value, s -> s.replace("${run}", token));
  }

  private static final Pattern SAVED = Pattern.compile("\\$\\{([a-z_]+\\.[a-z_]+)\\}");

  /** {@code ${NAME.FIELD}} replaced by what the setup or an earlier step saved, in every string
   *  of {@code value}. */
  static Object withSaved(Object value, Map<String, String> saved) {
    return mapStrings(value, s -> SAVED.matcher(s).replaceAll(m -> {
      String found = saved.get(m.group(1));
      if (found == null) {
        throw new IllegalStateException("${" + m.group(1)
            + "}: no setup call or earlier step saved it");
      }
      return Matcher.quoteReplacement(found);
    }));
  }

  private static Object mapStrings(Object value, UnaryOperator<String> change) {
    if (value instanceof String s) {
      return change.apply(s);
    }
    if (value instanceof Map<?, ?> map) {
      Map<String, Object> out = new LinkedHashMap<>();
      map.forEach((k, v) -> out.put((String) k, mapStrings(v, change)));
      return out;
    }
    if (value instanceof List<?> list) {
      List<Object> out = new ArrayList<>();
      list.forEach(v -> out.add(mapStrings(v, change)));
      return out;
    }
    return value;
  }
}
