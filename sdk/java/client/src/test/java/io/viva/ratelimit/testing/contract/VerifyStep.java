package io.viva.ratelimit.testing.contract;

import io.viva.ratelimit.InvalidRequestException;
import io.viva.ratelimit.KeyVerification;
import io.viva.ratelimit.RateLimiterClient;
import io.viva.ratelimit.UnauthorizedException;
import io.viva.ratelimit.VerifiedLimit;
import io.viva.ratelimit.VerifyKeyRequest;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;

/**
 * A {@code verifyKey} step: the call ({@code verifyKey}, or {@code verifyKeyAsync} when the
 * runner asks), what came of it, and the texts that must not show a secret.
 */
record VerifyStep(KeyVerification verdict, RuntimeException thrown, Map<String, String> texts) {

  static VerifyStep perform(RateLimiterClient client, Map<String, Object> step, boolean async) {
    Map<String, String> texts = new LinkedHashMap<>();
    texts.put("client", client.toString());
    try {
      VerifyKeyRequest request = request(step);
      texts.put("request", request.toString());
      KeyVerification verdict = async ? join(client.verifyKeyAsync(request))
          : client.verifyKey(request);
      texts.put("verdict", verdict.toString());
      return new VerifyStep(verdict, null, texts);
    } catch (InvalidRequestException | UnauthorizedException e) {
      texts.put("error", e.toString());
      return new VerifyStep(null, e, texts);
    }
  }

  private static KeyVerification join(CompletableFuture<KeyVerification> future) {
    try {
      return future.join();
    } catch (CompletionException e) {
      if (e.getCause() instanceof RuntimeException cause) {
        throw cause;
      }
      throw e;
    }
  }

  private static VerifyKeyRequest request(Map<String, Object> step) {
    VerifyKeyRequest request = VerifyKeyRequest.of((String) step.get("key"));
    if (step.get("cost") instanceof Number cost) {
      request = request.cost(cost.longValue());
    }
    if (step.get("limits") instanceof List<?> names) {
      request = request.limits(names.stream().map(String::valueOf).toArray(String[]::new));
    }
    if (step.get("features") instanceof List<?> names) {
      request = request.features(names.stream().map(String::valueOf).toArray(String[]::new));
    }
    if (step.containsKey("client_address")) {
      request = request.clientAddress((String) step.get("client_address"));
    }
    return request;
  }

  void check(Map<String, Object> expect, Instant started, String where, List<String> problems) {
    if (expect.containsKey("error")) {
      checkError(Contract.object(expect.get("error"), "error"), where, problems);
      return;
    }
    if (thrown != null) {
      problems.add(where + ": the call failed: " + thrown);
      return;
    }
    if (expect.containsKey("verification")) {
      Expect.match(expect.get("verification"), view(verdict, started),
          where + " verification", problems);
    }
    if (expect.containsKey("unavailable")) {
      Map<String, Object> unavailable = Contract.object(expect.get("unavailable"), "unavailable");
      Contract.checkKeys(unavailable, Set.of("attempts"), where + " unavailable");
      if (verdict.error().isEmpty()) {
        problems.add(where + ": expected the verify failure mode to answer, got " + verdict);
      } else if (unavailable.containsKey("attempts")) {
        Expect.match(unavailable.get("attempts"), (long) verdict.attempts(),
            where + " unavailable.attempts", problems);
      }
    } else if (verdict.error().isPresent()) {
      problems.add(where + ": the sidecar did not answer: " + verdict);
    }
  }

  private void checkError(Map<String, Object> error, String where, List<String> problems) {
    Contract.checkKeys(error, Set.of("kind", "field"), where + " error");
    Object kind = error.get("kind");
    if ("invalid_request".equals(kind) && thrown instanceof InvalidRequestException invalid) {
      Expect.match(error.get("field"), invalid.field().orElse(null), where + " error.field",
          problems);
    } else if (!("unauthorized".equals(kind) && thrown instanceof UnauthorizedException)) {
      problems.add(where + ": expected an error of kind " + kind + ", got "
          + (thrown == null ? "an answer: " + verdict : thrown));
    }
  }

  void checkSecrets(List<String> secrets, String where, List<String> problems) {
    texts.forEach((place, text) -> {
      for (String secret : secrets) {
        if (secret != null && !secret.isEmpty() && text.contains(secret)) {
          problems.add(where + ": the " + place + " shows a secret: " + text);
        }
      }
    });
  }

  /** The verdict under the contract's names; reset_at as seconds from the step's start. */
  static Map<String, Object> view(KeyVerification v, Instant started) {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("valid", v.valid());
    m.put("code", v.code().map(Enum::name).orElse(null));
    m.put("key_id", v.keyId().orElse(null));
    m.put("customer_id", v.customerId().orElse(null));
    m.put("plan", v.plan().orElse(null));
    m.put("features", new ArrayList<Object>(v.features()));
    m.put("remaining", v.remaining().isPresent() ? v.remaining().getAsLong() : null);
    m.put("reset_at", v.resetAt().map(at -> (Object) seconds(at, started)).orElse(null));
    List<Object> limits = new ArrayList<>();
    for (VerifiedLimit l : v.limits()) {
      Map<String, Object> each = new LinkedHashMap<>();
      each.put("name", l.name());
      each.put("limit", l.limit());
      each.put("remaining", l.remaining());
      each.put("reset_at", seconds(l.resetAt(), started));
      each.put("exceeded", l.exceeded());
      limits.add(each);
    }
    m.put("limits", limits);
    return m;
  }

  private static double seconds(Instant at, Instant started) {
    return (at.toEpochMilli() - started.toEpochMilli()) / 1000.0;
  }
}
