package io.viva.ratelimit;

import java.net.ConnectException;
import java.net.http.HttpConnectTimeoutException;
import java.net.http.HttpResponse;
import java.util.Map;
import java.util.function.Function;

/**
 * What one attempt of a call gave: a value (the sidecar's answer, read), or an error that may be
 * worth another attempt ({@code retryable}: the sidecar cannot have seen the request). A
 * malformed request throws {@link InvalidRequestException} (and a refused root key
 * {@link UnauthorizedException}) from the readers: they are never retried, and no failure mode
 * covers them.
 */
record Attempt<T>(T value, String error, boolean retryable) {

  static <T> Attempt<T> answered(T value) {
    return new Attempt<>(value, null, false);
  }

  /** An answer that is not a decision: asking again at once would only add load. */
  static <T> Attempt<T> unanswered(String error) {
    return new Attempt<>(null, error, false);
  }

  static Attempt<CheckResult> check(HttpResponse<String> response, int attempt) {
    int status = response.statusCode();
    if (status == 200) {
      try {
        return answered(CheckResult.fromJson(Json.parse(response.body()))
            .withAttempts(attempt));
      } catch (IllegalArgumentException e) {
        return unanswered("the sidecar's answer is not a check result: " + e.getMessage());
      }
    }
    Object doc = jsonOrNull(response.body());
    if (status == 400 || status == 413) {
      throw invalid(doc, status);
    }
    String detail = doc instanceof Map<?, ?> m && m.get("error") instanceof String s
        ? s : response.body();
    // An answer, even a 503 (the store is down, no rules yet): the sidecar has decided
    // that it cannot decide, and asking again at once would only add load to it.
    return unanswered("HTTP " + status + " from the sidecar: " + truncate(detail, 200));
  }

  static Attempt<KeyVerification> verdict(HttpResponse<String> response) {
    int status = response.statusCode();
    Object doc = jsonOrNull(response.body());
    if (status == 200) {
      try {
        return answered(KeyVerification.fromJson(doc));
      } catch (IllegalArgumentException e) {
        return unanswered("the sidecar's answer is not a verification: " + e.getMessage());
      }
    }
    // Only the sidecar's own error text, never a body it did not write: something else on
    // its port might echo the request, and the request holds the key.
    String own = doc instanceof Map<?, ?> m && m.get("error") instanceof String s
        ? ": " + truncate(s, 200) : "";
    if (status == 401 || status == 403) {
      throw new UnauthorizedException("HTTP " + status + " from the sidecar" + own, status);
    }
    if (status == 400 || status == 413) {
      throw invalid(doc, status);
    }
    return unanswered("HTTP " + status + " from the sidecar" + own);
  }

  static <T> Attempt<T> failed(Throwable e) {
    // Connect-phase failures: the sidecar never saw the request, so a retry cannot charge
    // twice. Anything later (a read timeout, a reset) may have been counted: not retried.
    boolean connectPhase = e instanceof ConnectException
        || e instanceof HttpConnectTimeoutException;
    return new Attempt<>(null, describe(e), connectPhase);
  }

  /** A lease's answer to an acquire or a renewal; a 404 is a lease that is gone. */
  static Attempt<LeaseResult> lease(HttpResponse<String> response, int attempt) {
    if (response.statusCode() == 404) {
      return answered(LeaseResult.gone());
    }
    return parsed(response, "lease", doc -> LeaseResult.fromJson(doc).withAttempts(attempt));
  }

  /** A release's answer; a 404 is a lease that was gone already. */
  static Attempt<ReleaseResult> release(HttpResponse<String> response, int attempt) {
    if (response.statusCode() == 404) {
      return answered(new ReleaseResult(false, null, null, null, attempt));
    }
    return parsed(response, "release", doc -> ReleaseResult.fromJson(doc, attempt));
  }

  /** A 200's JSON read by {@code read}; a 400/413 throws; any other answer is unanswered. */
  private static <T> Attempt<T> parsed(HttpResponse<String> response, String what,
      Function<Object, T> read) {
    int status = response.statusCode();
    Object doc = jsonOrNull(response.body());
    if (status == 200) {
      try {
        return answered(read.apply(doc));
      } catch (IllegalArgumentException e) {
        return unanswered("the sidecar's answer is not a " + what + ": " + e.getMessage());
      }
    }
    if (status == 400 || status == 413) {
      throw invalid(doc, status);
    }
    String detail = doc instanceof Map<?, ?> m && m.get("error") instanceof String s
        ? s : response.body();
    return unanswered("HTTP " + status + " from the sidecar: " + truncate(detail, 200));
  }

  static InvalidRequestException invalid(Object doc, int status) {
    if (doc instanceof Map<?, ?> m && m.get("error") instanceof String error) {
      return new InvalidRequestException(error, m.get("field") instanceof String f ? f : null);
    }
    return new InvalidRequestException("the sidecar refused the request with HTTP " + status,
        null);
  }

  private static Object jsonOrNull(String body) {
    try {
      return Json.parse(body);
    } catch (IllegalArgumentException e) {
      return null;
    }
  }

  private static String describe(Throwable e) {
    String name = e.getClass().getSimpleName();
    String message = e.getMessage();
    if ((message == null || message.isEmpty()) && e.getCause() != null) {
      message = e.getCause().toString();
    }
    return message == null || message.isEmpty() ? name : name + ": " + message;
  }

  private static String truncate(String text, int max) {
    return text.length() <= max ? text : text.substring(0, max);
  }
}
