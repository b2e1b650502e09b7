package io.viva.ratelimit.testing.contract;

import io.viva.ratelimit.CheckRequest;
import io.viva.ratelimit.CheckResult;
import io.viva.ratelimit.Descriptor;
import io.viva.ratelimit.FailureMode;
import io.viva.ratelimit.InvalidRequestException;
import io.viva.ratelimit.JsonAccess;
import io.viva.ratelimit.RateLimiterClient;
import io.viva.ratelimit.RetryPolicy;
import io.viva.ratelimit.testing.SidecarProcess;
import io.viva.ratelimit.testing.Tools;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;

/**
 * Runs one vector against one sidecar profile: a new client per step from the merged settings,
 * the call or the HTTP request, then every expectation of the step. Problems are collected and
 * reported together, with the step's number.
 */
public final class ContractRunner {
  static final Set<String> CLIENT_EXPECT = Set.of("return", "result", "headers", "error",
      "unavailable", "verification", "lease", "released", "sidecar_requests", "silent_requests",
      "min_elapsed_ms", "max_elapsed_ms");
  public static final Set<String> LEASE_CALLS = Set.of("acquire_lease", "renew_lease", "release_lease");
  static final Set<String> MIDDLEWARE_EXPECT = Set.of("status", "body", "json", "headers",
      "sidecar_requests", "silent_requests", "min_elapsed_ms", "max_elapsed_ms");
  static final Set<String> REQUEST_KEYS = Set.of("method", "path", "headers");

  /** Serves an app (every route: 200, text "ok") wrapped in the SDK's middleware. */
  public interface MiddlewareHost {
    /** Wrap the app with the middleware built from {@code settings} (namespace,
     *  identifier_header, hits) over {@code client}; answer the app's base URL. */
    String serve(RateLimiterClient client, Map<String, Object> settings);
  }

  private final ContractWorld world;
  private final MiddlewareHost host;
  private final HttpClient http = HttpClient.newBuilder()
      .connectTimeout(Duration.ofSeconds(5)).build();

  public ContractRunner(ContractWorld world, MiddlewareHost host) {
    this.world = world;
    this.host = host;
  }

  /** What {@code {port}} points at, and the sidecar or silent server behind it. */
  private record Binding(int port, SidecarProcess sidecar, boolean silent) {}

  public void run(Contract.Vector vector, String profile) {
    run(vector, profile, false);
  }

  /** With {@code async}, verifyKey and lease steps go through their {@code Async} twins. */
  public void run(Contract.Vector vector, String profile, boolean async) {
    String token = Long.toHexString(ThreadLocalRandom.current().nextLong() & 0xffffffffL);
    Map<String, Object> doc = Contract.object(Contract.withRun(vector.doc(), token), "vector");
    Binding binding = bind(vector.target(), profile);
    if (doc.get("window_s") instanceof Number seconds) {
      waitForWindow(seconds.doubleValue());
    }
    Map<String, String> saved = new HashMap<>(doc.containsKey("setup")
        ? world.setup(binding.sidecar(), (List<?>) doc.get("setup")) : Map.of());
    List<String> problems = new ArrayList<>();
    List<?> steps = (List<?>) doc.get("steps");
    for (int i = 0; i < steps.size(); i++) {
      Map<String, Object> step = Contract.object(Contract.withSaved(steps.get(i), saved), "step");
      String where = vector + (profile == null ? "" : "[" + profile + "]") + " step " + i;
      if (step.get("wait_ms") instanceof Number ms) { // outside the step's time and counters
        SidecarPause.pause(ms.longValue());
      }
      runStep(doc, step, binding, where, problems, async).forEach((field, value) ->
          saved.put(step.get("save") + "." + field, value));
    }
    if (!problems.isEmpty()) {
      throw new AssertionError(String.join("\n", problems));
    }
  }

  private Binding bind(String target, String profile) {
    return switch (target) {
      case "sidecar", "store_down", "full", "full_budget" -> {
        SidecarProcess sidecar = world.sidecar(profile);
        yield new Binding(sidecar.httpPort(), sidecar, false);
      }
      case "closed_port" -> new Binding(Tools.freePort(), null, false);
      case "silent_server" -> new Binding(world.silentServer().port(), null, true);
      default -> throw new IllegalStateException("unknown target " + target);
    };
  }

  /** Runs a step and checks it; answers what its {@code save} keeps (FIELD → value). */
  private Map<String, String> runStep(Map<String, Object> vector, Map<String, Object> step,
      Binding binding, String where, List<String> problems, boolean async) {
    Map<String, String> kept = Map.of();
    boolean middleware = step.containsKey("request");
    Contract.checkKeys(step, middleware ? Contract.MIDDLEWARE_STEP_KEYS
        : Contract.CLIENT_STEP_KEYS, where);
    Map<String, Object> expect = Contract.object(step.getOrDefault("expect", Map.of()), where
        + " expect");
    Contract.checkKeys(expect, middleware ? MIDDLEWARE_EXPECT : CLIENT_EXPECT, where + " expect");
    RateLimiterClient client = client(Contract.settings(world.contract, "client", vector, step),
        binding.port(), world.rootKey);
    double requestsBefore = counter(expect, binding, where);
    int silentBefore = binding.silent() ? world.silentServer().requests() : 0;
    Instant started = Instant.now();
    long t0 = System.nanoTime();
    if (middleware) {
      Map<String, Object> settings = Contract.settings(world.contract, "middleware", vector, step);
      HttpResponse<String> response = request(host.serve(client, settings),
          Contract.object(step.get("request"), where + " request"), where);
      checkElapsed(expect, t0, where, problems);
      checkResponse(expect, response, where, problems);
    } else if ("verifyKey".equals(step.get("call"))) {
      VerifyStep call = VerifyStep.perform(client, step, async);
      checkElapsed(expect, t0, where, problems);
      call.check(expect, started, where, problems);
      call.checkSecrets(List.of((String) step.get("key"), world.rootKey), where, problems);
    } else if (LEASE_CALLS.contains((String) step.get("call"))) {
      LeaseStep call = LeaseStep.perform(client, step, async);
      checkElapsed(expect, t0, where, problems);
      call.check(expect, started, where, problems);
      kept = step.containsKey("save") ? call.strings() : Map.of();
    } else {
      ClientCall call = ClientCall.perform(client, step, where);
      checkElapsed(expect, t0, where, problems);
      call.check(expect, started, where, problems);
    }
    if (expect.containsKey("sidecar_requests")) {
      double grew = world.requestCount(binding.sidecar()) - requestsBefore;
      long want = ((Number) expect.get("sidecar_requests")).longValue();
      if (grew != want) {
        problems.add(where + ": the sidecar counted " + grew + " requests, expected " + want);
      }
    }
    if (expect.containsKey("silent_requests")) {
      checkSilent(((Number) expect.get("silent_requests")).intValue(), silentBefore, binding,
          where, problems);
    }
    return kept;
  }

  private double counter(Map<String, Object> expect, Binding binding, String where) {
    if (!expect.containsKey("sidecar_requests")) {
      return 0;
    }
    if (binding.sidecar() == null) {
      throw new IllegalStateException(where + ": sidecar_requests on a target without sidecar");
    }
    return world.requestCount(binding.sidecar());
  }

  private void checkSilent(int want, int before, Binding binding, String where,
      List<String> problems) {
    if (!binding.silent()) {
      throw new IllegalStateException(where + ": silent_requests needs target silent_server");
    }
    // The server's threads see the bytes a moment after the client sent them: give them that
    // moment, then compare exactly.
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(2);
    while (world.silentServer().requests() - before < want && System.nanoTime() < deadline) {
      SidecarPause.pause(10);
    }
    int got = world.silentServer().requests() - before;
    if (got != want) {
      problems.add(where + ": " + got + " requests reached the silent server, expected " + want);
    }
  }

  private static void checkElapsed(Map<String, Object> expect, long t0, String where,
      List<String> problems) {
    long ms = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
    if (expect.containsKey("min_elapsed_ms")
        && ms < ((Number) expect.get("min_elapsed_ms")).longValue()) {
      problems.add(where + ": took " + ms + " ms, expected at least " + expect.get(
          "min_elapsed_ms"));
    }
    if (expect.containsKey("max_elapsed_ms")
        && ms > ((Number) expect.get("max_elapsed_ms")).longValue()) {
      problems.add(where + ": took " + ms + " ms, expected at most " + expect.get(
          "max_elapsed_ms"));
    }
  }

  /** A client from the merged settings, {@code {port}} and {@code {root_key}} filled in. */
  static RateLimiterClient client(Map<String, Object> s, int port, String rootKey) {
    RateLimiterClient.Builder builder = RateLimiterClient.builder()
        .endpoint(((String) s.get("endpoint")).replace("{port}", String.valueOf(port)))
        .timeout(Duration.ofMillis(((Number) s.get("timeout_ms")).longValue()))
        .retry(new RetryPolicy(((Number) s.get("attempts")).intValue(),
            Duration.ofMillis(((Number) s.get("backoff_ms")).longValue()),
            Duration.ofMillis(((Number) s.get("max_backoff_ms")).longValue())))
        .failureMode(mode(s, "failure_mode"));
    if (s.get("root_key") instanceof String key) { // null: the client has none
      builder.rootKey(key.replace("{root_key}", rootKey));
    }
    if (s.containsKey("verify_failure_mode")) { // absent: the client's default
      builder.verifyFailureMode(mode(s, "verify_failure_mode"));
    }
    return builder.build();
  }

  private static FailureMode mode(Map<String, Object> s, String setting) {
    return switch ((String) s.get(setting)) {
      case "open" -> FailureMode.OPEN;
      case "closed" -> FailureMode.CLOSED;
      default -> throw new IllegalStateException("unknown " + setting + " " + s.get(setting));
    };
  }

  // -- middleware steps ------------------------------------------------------------------------

  private HttpResponse<String> request(String base, Map<String, Object> spec, String where) {
    Contract.checkKeys(spec, REQUEST_KEYS, where + " request");
    String method = (String) spec.getOrDefault("method", "GET");
    String path = (String) spec.getOrDefault("path", "/hello");
    HttpRequest.Builder builder = HttpRequest.newBuilder(URI.create(base + path))
        .timeout(Duration.ofSeconds(30))
        .method(method, HttpRequest.BodyPublishers.noBody());
    Contract.object(spec.getOrDefault("headers", Map.of()), "headers")
        .forEach((k, v) -> builder.header(k, (String) v));
    try {
      return http.send(builder.build(), HttpResponse.BodyHandlers.ofString());
    } catch (IOException e) {
      throw new AssertionError(where + ": the app did not answer: " + e, e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new AssertionError(where + ": interrupted", e);
    }
  }

  private static void checkResponse(Map<String, Object> expect, HttpResponse<String> response,
      String where, List<String> problems) {
    if (expect.containsKey("status")) {
      Expect.match(expect.get("status"), (long) response.statusCode(), where + " status",
          problems);
    }
    if (expect.containsKey("body")) {
      Expect.match(expect.get("body"), response.body(), where + " body", problems);
    }
    if (expect.containsKey("json")) {
      Object doc;
      try {
        doc = JsonAccess.parse(response.body());
      } catch (IllegalArgumentException e) {
        doc = "(not JSON: " + response.body() + ")";
      }
      Expect.match(expect.get("json"), doc, where + " json", problems);
    }
    if (expect.containsKey("headers")) {
      Map<String, String> headers = new LinkedHashMap<>();
      response.headers().map().forEach((k, v) ->
          headers.put(k.toLowerCase(Locale.ROOT), String.join(", ", v)));
      Expect.headers(Contract.object(expect.get("headers"), "headers"), headers,
          where + " headers", problems);
    }
  }

  // -- client steps ----------------------------------------------------------------------------

  /** One client call and what came of it: a boolean, a result, or an exception. */
  private record ClientCall(String call, Boolean returned, CheckResult result, Throwable thrown) {

    static ClientCall perform(RateLimiterClient client, Map<String, Object> step, String where) {
      String call = (String) step.get("call");
      if (!List.of("allow", "check", "report").contains(call)) {
        throw new IllegalStateException(where + ": unknown call " + call);
      }
      try {
        CheckRequest request = request(step);
        return switch (call) {
          case "allow" -> new ClientCall(call, client.allow(request.identifier(),
              request.namespace(), request.hits()), null, null);
          case "check" -> new ClientCall(call, null, client.check(request), null);
          default -> new ClientCall(call, null, client.report(request), null);
        };
      } catch (RuntimeException e) {
        return new ClientCall(call, null, null, e);
      }
    }

    private static CheckRequest request(Map<String, Object> step) {
      String namespace = (String) step.get("namespace");
      long hits = step.containsKey("hits") ? ((Number) step.get("hits")).longValue() : 1;
      if (!step.containsKey("descriptors")) {
        return step.containsKey("hits")
            ? CheckRequest.of((String) step.get("identifier"), namespace, hits)
            : CheckRequest.of((String) step.get("identifier"), namespace);
      }
      List<Descriptor> descriptors = new ArrayList<>();
      for (Object d : (List<?>) step.get("descriptors")) {
        List<Descriptor.Entry> entries = new ArrayList<>();
        for (Object pair : (List<?>) d) {
          List<?> kv = (List<?>) pair;
          entries.add(new Descriptor.Entry((String) kv.get(0), (String) kv.get(1)));
        }
        descriptors.add(new Descriptor(entries));
      }
      return CheckRequest.ofDescriptors(namespace, hits, descriptors);
    }

    void check(Map<String, Object> expect, Instant started, String where, List<String> problems) {
      if (!checkError(expect, where, problems)) {
        return;
      }
      if (expect.containsKey("return")) {
        requireCall("allow", "return", where);
        Expect.match(expect.get("return"), returned, where + " return", problems);
      }
      if (expect.containsKey("result")) {
        requireCall("check/report", "result", where);
        Expect.match(expect.get("result"), asMap(result, started), where + " result", problems);
      }
      if (expect.containsKey("headers")) {
        requireCall("check/report", "headers", where);
        Map<String, String> headers = new LinkedHashMap<>();
        result.headers().forEach(h -> headers.put(h.getKey().toLowerCase(Locale.ROOT),
            h.getValue()));
        Expect.headers(Contract.object(expect.get("headers"), "headers"), headers,
            where + " headers", problems);
      }
      checkUnavailable(expect, where, problems);
    }

    /** False when the call failed (nothing else can be checked then). */
    private boolean checkError(Map<String, Object> expect, String where, List<String> problems) {
      if (expect.containsKey("error")) {
        Map<String, Object> error = Contract.object(expect.get("error"), "error");
        Contract.checkKeys(error, Set.of("kind", "field"), where + " error");
        if (!"invalid_request".equals(error.get("kind"))) {
          throw new IllegalStateException(where + ": unknown error kind " + error.get("kind"));
        }
        if (!(thrown instanceof InvalidRequestException invalid)) {
          problems.add(where + ": expected an InvalidRequestException, got "
              + (thrown == null ? "an answer: " + (result != null ? result : returned)
              : trace(thrown)));
        } else {
          Expect.match(error.get("field"), invalid.field().orElse(null), where + " error.field",
              problems);
        }
        return false;
      }
      if (thrown != null) {
        problems.add(where + ": the call failed: " + trace(thrown));
        return false;
      }
      return true;
    }

    private void checkUnavailable(Map<String, Object> expect, String where,
        List<String> problems) {
      if (expect.containsKey("unavailable")) {
        requireCall("check/report", "unavailable", where);
        Map<String, Object> unavailable = Contract.object(expect.get("unavailable"),
            "unavailable");
        Contract.checkKeys(unavailable, Set.of("attempts"), where + " unavailable");
        if (result.error().isEmpty()) {
          problems.add(where + ": expected the failure mode to answer, got " + result);
        } else if (unavailable.containsKey("attempts")) {
          Expect.match(unavailable.get("attempts"), (long) result.attempts(),
              where + " unavailable.attempts", problems);
        }
      } else if (result != null && result.error().isPresent()) {
        problems.add(where + ": the sidecar did not answer: " + result);
      }
    }

    private void requireCall(String calls, String key, String where) {
      boolean ok = calls.equals("allow") ? returned != null : result != null;
      if (!ok) {
        throw new IllegalStateException(where + ": '" + key + "' is for " + calls + " steps, "
            + "this one is " + call);
      }
    }
  }

  /** The result under the contract's names; reset_at as seconds from the step's start. */
  static Map<String, Object> asMap(CheckResult r, Instant started) {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("allowed", r.allowed());
    m.put("limit", boxed(r.limit()));
    m.put("remaining", boxed(r.remaining()));
    m.put("reset_at", r.resetAt().map(at ->
        (Object) ((at.toEpochMilli() - started.toEpochMilli()) / 1000.0)).orElse(null));
    m.put("reset_after_seconds", boxed(r.resetAfterSeconds()));
    m.put("retry_after_seconds", boxed(r.retryAfterSeconds()));
    m.put("window_seconds", boxed(r.windowSeconds()));
    m.put("policy", r.policy().orElse(null));
    List<Object> results = new ArrayList<>();
    r.results().forEach(each -> results.add(asMap(each, started)));
    m.put("results", results);
    return m;
  }

  private static Long boxed(java.util.OptionalLong value) {
    return value.isPresent() ? value.getAsLong() : null;
  }

  private static String trace(Throwable t) {
    StringWriter out = new StringWriter();
    t.printStackTrace(new PrintWriter(out));
    return out.toString();
  }

  /** How much of a window a vector with window_s needs left to start in it. */
  private static final long WINDOW_MARGIN_MS = 10_000;

  /**
   * A vector with window_s makes its requests in one epoch-aligned window of that many seconds
   * (the sidecar's fixed windows): when this one is nearly over, in the next.
   */
  private static void waitForWindow(double seconds) {
    long window = Math.round(seconds * 1000);
    long left = window - System.currentTimeMillis() % window;
    if (left < WINDOW_MARGIN_MS) {
      SidecarPause.pause(left + 50);
    }
  }

  /** Thread.sleep without the checked exception. */
  private static final class SidecarPause {
    static void pause(long ms) {
      try {
        Thread.sleep(ms);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }
  }
}
