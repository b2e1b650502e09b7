package io.viva.ratelimit.testing.contract;

import io.viva.ratelimit.Descriptor;
import io.viva.ratelimit.InvalidRequestException;
import io.viva.ratelimit.LeaseRequest;
import io.viva.ratelimit.LeaseResult;
import io.viva.ratelimit.RateLimiterClient;
import io.viva.ratelimit.ReleaseResult;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.OptionalLong;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;

/**
 * An {@code acquire_lease}, {@code renew_lease} or {@code release_lease} step: the call (or its
 * {@code Async} twin when the runner asks) and what came of it, in the contract's names.
 */
record LeaseStep(Map<String, Object> answer, String kind, String error, int attempts,
    RuntimeException thrown) {

  static LeaseStep perform(RateLimiterClient client, Map<String, Object> step, boolean async) {
    Duration ttl = step.get("ttl_ms") instanceof Number ms ? Duration.ofMillis(ms.longValue())
        : null;
    String id = (String) step.get("lease_id");
    try {
      return switch ((String) step.get("call")) {
        case "acquire_lease" -> {
          LeaseRequest request = request(step, ttl);
          yield of(async ? join(client.acquireLeaseAsync(request)) : client.acquireLease(request));
        }
        case "renew_lease" -> of(async ? join(client.renewLeaseAsync(id, ttl))
            : client.renewLease(id, ttl));
        default -> of(async ? join(client.releaseLeaseAsync(id)) : client.releaseLease(id));
      };
    } catch (InvalidRequestException e) {
      return new LeaseStep(null, null, null, 0, e);
    }
  }

  private static LeaseRequest request(Map<String, Object> step, Duration ttl) {
    String namespace = (String) step.get("namespace");
    LeaseRequest request;
    if (step.get("descriptors") instanceof List<?> list) {
      List<Descriptor> descriptors = new ArrayList<>();
      for (Object d : list) {
        List<Descriptor.Entry> entries = new ArrayList<>();
        for (Object pair : (List<?>) d) {
          entries.add(new Descriptor.Entry((String) ((List<?>) pair).get(0),
              (String) ((List<?>) pair).get(1)));
        }
        descriptors.add(new Descriptor(entries));
      }
      request = LeaseRequest.ofDescriptors(namespace, descriptors);
    } else {
      request = LeaseRequest.of((String) step.get("identifier"), namespace);
    }
    return ttl == null ? request : request.ttl(ttl);
  }

  private static <T> T join(CompletableFuture<T> future) {
    try {
      return future.join();
    } catch (CompletionException e) {
      if (e.getCause() instanceof RuntimeException cause) {
        throw cause;
      }
      throw e;
    }
  }

  private static LeaseStep of(LeaseResult r) {
    return new LeaseStep(view(r, true), "lease", r.error().orElse(null), r.attempts(),
        null);
  }

  private static LeaseStep of(ReleaseResult r) {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("released", r.released());
    m.put("active", boxed(r.active()));
    m.put("limit", boxed(r.limit()));
    return new LeaseStep(m, "released", r.error().orElse(null), r.attempts(), null);
  }

  /** The answer's string fields, for the step's {@code save}. */
  Map<String, String> strings() {
    Map<String, String> out = new LinkedHashMap<>();
    if (answer != null) {
      answer.forEach((k, v) -> {
        if (v instanceof String s) {
          out.put(k, s);
        }
      });
    }
    return out;
  }

  void check(Map<String, Object> expect, Instant started, String where, List<String> problems) {
    if (expect.containsKey("error")) {
      Map<String, Object> error = Contract.object(expect.get("error"), "error");
      Contract.checkKeys(error, Set.of("kind", "field"), where + " error");
      if (!"invalid_request".equals(error.get("kind"))) {
        throw new IllegalStateException(where + ": unknown error kind " + error.get("kind"));
      }
      if (thrown instanceof InvalidRequestException invalid) {
        Expect.match(error.get("field"), invalid.field().orElse(null), where + " error.field",
            problems);
      } else {
        problems.add(where + ": expected an InvalidRequestException, got " + answer);
      }
      return;
    }
    if (thrown != null) {
      problems.add(where + ": the call failed: " + thrown);
      return;
    }
    for (String key : List.of("lease", "released")) {
      if (expect.containsKey(key) && !key.equals(kind)) {
        throw new IllegalStateException(where + ": '" + key + "' on a step answering " + kind);
      }
    }
    if (expect.containsKey(kind)) {
      Expect.match(expect.get(kind), withTimes(answer, started), where + " " + kind, problems);
    }
    if (expect.containsKey("unavailable")) {
      Map<String, Object> unavailable = Contract.object(expect.get("unavailable"), "unavailable");
      Contract.checkKeys(unavailable, Set.of("attempts"), where + " unavailable");
      if (error == null) {
        problems.add(where + ": expected the failure mode to answer, got " + answer);
      } else if (unavailable.containsKey("attempts")) {
        Expect.match(unavailable.get("attempts"), (long) attempts,
            where + " unavailable.attempts", problems);
      }
    } else if (error != null) {
      problems.add(where + ": the sidecar did not answer: " + error);
    }
  }

  /** expires_at as seconds from the step's start (kept as instants until the step is checked). */
  private static Object withTimes(Object value, Instant started) {
    if (value instanceof Instant at) {
      return (at.toEpochMilli() - started.toEpochMilli()) / 1000.0;
    }
    if (value instanceof Map<?, ?> map) {
      Map<String, Object> out = new LinkedHashMap<>();
      map.forEach((k, v) -> out.put((String) k, withTimes(v, started)));
      return out;
    }
    if (value instanceof List<?> list) {
      return list.stream().map(v -> withTimes(v, started)).toList();
    }
    return value;
  }

  /** A lease answer under the contract's names; {@code whole}: with its id and results. */
  private static Map<String, Object> view(LeaseResult r, boolean whole) {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("allowed", r.allowed());
    m.put("active", boxed(r.active()));
    m.put("limit", boxed(r.limit()));
    m.put("expires_at", r.expiresAt().orElse(null));
    m.put("ttl_seconds", r.ttl().map(d -> (Object) (d.toNanos() / 1e9)).orElse(null));
    m.put("retry_after_seconds", boxed(r.retryAfterSeconds()));
    m.put("policy", r.policy().orElse(null));
    if (whole) {
      m.put("lease_id", r.leaseId().orElse(null));
      List<Object> results = new ArrayList<>();
      r.results().forEach(each -> results.add(view(each, false)));
      m.put("results", results);
    }
    return m;
  }

  private static Long boxed(OptionalLong value) {
    return value.isPresent() ? value.getAsLong() : null;
  }
}
