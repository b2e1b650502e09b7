package io.viva.ratelimit;

import java.io.IOException;
import java.net.ConnectException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpConnectTimeoutException;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

/**
 * Client of the sidecar's REST API ({@code POST /v1/check}, {@code POST /v1/report}); thread-safe,
 * keep one per application: its {@link HttpClient} keeps connections open.
 *
 * <pre>{@code
 * RateLimiterClient limiter = RateLimiterClient.builder()
 *     .endpoint("http://localhost:8080")
 *     .build();
 * if (limiter.allow("user_123", "api_requests")) { ... }
 * }</pre>
 *
 * <p>Calls that never reached the sidecar (connection refused, connect timeout) are retried per
 * the {@link RetryPolicy}; when the attempts run out, the {@link FailureMode} answers. Nothing
 * else is retried: a timeout while waiting for the answer (the hits may be charged), an HTTP 503
 * (the sidecar answered that its store is down) or any other answer. A malformed request always
 * throws {@link InvalidRequestException}.
 */
public final class RateLimiterClient {
  public static final String DEFAULT_ENDPOINT = "http://127.0.0.1:8080";
  /** Per attempt: a rate-limit check must never hold a request for long. */
  public static final Duration DEFAULT_TIMEOUT = Duration.ofMillis(500);

  private static final String USER_AGENT = "viva-ratelimit-java/0.1.0";

  private final URI endpoint;
  private final Duration timeout;
  private final RetryPolicy retry;
  private final FailureMode failureMode;
  private final Map<String, String> headers;
  private final HttpClient http;

  private RateLimiterClient(Builder b) {
    this.endpoint = Endpoint.parse(b.endpoint);
    this.timeout = b.timeout;
    this.retry = b.retry;
    this.failureMode = b.failureMode;
    this.headers = Map.copyOf(b.headers);
    this.http = b.httpClient != null ? b.httpClient : HttpClient.newBuilder()
        .version(HttpClient.Version.HTTP_1_1) // the sidecar's HTTP port speaks HTTP/1.1
        .connectTimeout(timeout)
        .build();
  }

  public static Builder builder() {
    return new Builder();
  }

  /** Charge one hit to {@code identifier} in {@code namespace}; true when allowed. */
  public boolean allow(String identifier, String namespace) {
    return check(CheckRequest.of(identifier, namespace)).allowed();
  }

  /** Charge {@code hits} to {@code identifier} in {@code namespace}; true when allowed. */
  public boolean allow(String identifier, String namespace, long hits) {
    return check(CheckRequest.of(identifier, namespace, hits)).allowed();
  }

  /** Charge and decide ({@code hits = 0} peeks), with the whole answer. */
  public CheckResult check(CheckRequest request) {
    return call("/v1/check", request);
  }

  /** Charge usage known only afterwards (tokens, bytes); never refused, says where it stands. */
  public CheckResult report(CheckRequest request) {
    return call("/v1/report", request);
  }

  public CheckResult report(String identifier, String namespace, long hits) {
    return report(CheckRequest.of(identifier, namespace, hits));
  }

  /** Where the budget stands, without charging. */
  public CheckResult peek(String identifier, String namespace) {
    return report(CheckRequest.of(identifier, namespace, 0));
  }

  public CompletableFuture<Boolean> allowAsync(String identifier, String namespace) {
    return checkAsync(CheckRequest.of(identifier, namespace)).thenApply(CheckResult::allowed);
  }

  public CompletableFuture<Boolean> allowAsync(String identifier, String namespace, long hits) {
    return checkAsync(CheckRequest.of(identifier, namespace, hits))
        .thenApply(CheckResult::allowed);
  }

  /**
   * {@link #check} without blocking a thread. The future fails with
   * {@link InvalidRequestException} or, with {@link FailureMode#RAISE},
   * {@link SidecarUnavailableException}.
   */
  public CompletableFuture<CheckResult> checkAsync(CheckRequest request) {
    return callAsync(httpRequest("/v1/check", request), 1);
  }

  public CompletableFuture<CheckResult> reportAsync(CheckRequest request) {
    return callAsync(httpRequest("/v1/report", request), 1);
  }

  public URI endpoint() {
    return endpoint;
  }

  public Duration timeout() {
    return timeout;
  }

  public RetryPolicy retryPolicy() {
    return retry;
  }

  public FailureMode failureMode() {
    return failureMode;
  }

  // -- one call: attempts, then the failure mode -----------------------------------------------

  private CheckResult call(String path, CheckRequest request) {
    HttpRequest httpRequest = httpRequest(path, request);
    for (int attempt = 1; ; attempt++) {
      Attempt outcome;
      try {
        outcome = Attempt.of(http.send(httpRequest, HttpResponse.BodyHandlers.ofString()));
      } catch (IOException e) {
        outcome = Attempt.failed(e);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return giveUp("interrupted while waiting for the sidecar", attempt);
      }
      if (outcome.result != null) {
        return outcome.result.withAttempts(attempt);
      }
      if (!outcome.retryable || attempt >= retry.attempts()) {
        return giveUp(outcome.error, attempt);
      }
      try {
        Thread.sleep(retry.delay(attempt - 1).toMillis());
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return giveUp(outcome.error, attempt);
      }
    }
  }

  private CompletableFuture<CheckResult> callAsync(HttpRequest httpRequest, int attempt) {
    return http.sendAsync(httpRequest, HttpResponse.BodyHandlers.ofString())
        .handle((response, failure) -> failure == null
            ? Attempt.of(response) : Attempt.failed(unwrap(failure)))
        .thenCompose(outcome -> {
          if (outcome.result != null) {
            return CompletableFuture.completedFuture(outcome.result.withAttempts(attempt));
          }
          if (!outcome.retryable || attempt >= retry.attempts()) {
            return giveUpAsync(outcome.error, attempt);
          }
          long pause = retry.delay(attempt - 1).toMillis();
          return CompletableFuture.runAsync(() -> { },
                  CompletableFuture.delayedExecutor(pause, TimeUnit.MILLISECONDS))
              .thenCompose(ignored -> callAsync(httpRequest, attempt + 1));
        });
  }

  private HttpRequest httpRequest(String path, CheckRequest request) {
    Objects.requireNonNull(request, "request");
    HttpRequest.Builder builder = HttpRequest.newBuilder(URI.create(endpoint + path))
        .timeout(timeout)
        .header("Content-Type", "application/json")
        .header("Accept", "application/json")
        .header("User-Agent", USER_AGENT)
        .POST(HttpRequest.BodyPublishers.ofString(request.toJson()));
    headers.forEach(builder::setHeader);
    return builder.build();
  }

  private CheckResult giveUp(String error, int attempts) {
    if (failureMode == FailureMode.RAISE) {
      throw new SidecarUnavailableException(error, attempts);
    }
    return CheckResult.failure(failureMode, error, attempts);
  }

  private CompletableFuture<CheckResult> giveUpAsync(String error, int attempts) {
    try {
      return CompletableFuture.completedFuture(giveUp(error, attempts));
    } catch (SidecarUnavailableException e) {
      return CompletableFuture.failedFuture(e);
    }
  }

  private static Throwable unwrap(Throwable failure) {
    Throwable t = failure;
    while ((t instanceof CompletionException || t instanceof ExecutionException)
        && t.getCause() != null) {
      t = t.getCause();
    }
    return t;
  }

  /** What one attempt gave: a result, or an error that may be worth another attempt. */
  private static final class Attempt {
    final CheckResult result;
    final String error;
    final boolean retryable;

    private Attempt(CheckResult result, String error, boolean retryable) {
      this.result = result;
      this.error = error;
      this.retryable = retryable;
    }

    static Attempt of(HttpResponse<String> response) {
      int status = response.statusCode();
      if (status == 200) {
        try {
          return new Attempt(CheckResult.fromJson(Json.parse(response.body())), null, false);
        } catch (IllegalArgumentException e) {
          return new Attempt(null, "the sidecar's answer is not a check result: "
              + e.getMessage(), false);
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
      return new Attempt(null, "HTTP " + status + " from the sidecar: " + truncate(detail, 200),
          false);
    }

    static Attempt failed(Throwable e) {
      // Connect-phase failures: the sidecar never saw the request, so a retry cannot charge
      // twice. Anything later (a read timeout, a reset) may have been counted: not retried.
      boolean connectPhase = e instanceof ConnectException
          || e instanceof HttpConnectTimeoutException;
      return new Attempt(null, describe(e), connectPhase);
    }
  }

  private static InvalidRequestException invalid(Object doc, int status) {
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

  /** Options of a {@link RateLimiterClient}; every one has a default. */
  public static final class Builder {
    private String endpoint = DEFAULT_ENDPOINT;
    private Duration timeout = DEFAULT_TIMEOUT;
    private RetryPolicy retry = RetryPolicy.DEFAULT;
    private FailureMode failureMode = FailureMode.OPEN;
    private final Map<String, String> headers = new LinkedHashMap<>();
    private HttpClient httpClient;

    private Builder() {}

    /** The sidecar's HTTP port: {@code http://localhost:8080} or {@code localhost:8080}. */
    public Builder endpoint(String endpoint) {
      Endpoint.parse(endpoint); // fail here, naming the bad value
      this.endpoint = endpoint;
      return this;
    }

    /** Per attempt: connecting, and waiting for the answer (default 500 ms). */
    public Builder timeout(Duration timeout) {
      if (timeout == null || timeout.isNegative() || timeout.isZero()) {
        throw new IllegalArgumentException("timeout must be a positive duration, not " + timeout);
      }
      this.timeout = timeout;
      return this;
    }

    public Builder retry(RetryPolicy retry) {
      this.retry = Objects.requireNonNull(retry, "retry");
      return this;
    }

    public Builder failureMode(FailureMode failureMode) {
      this.failureMode = Objects.requireNonNull(failureMode, "failureMode");
      return this;
    }

    /** A header sent with every call (e.g. authentication added by a proxy in between). */
    public Builder header(String name, String value) {
      headers.put(Objects.requireNonNull(name, "name"), Objects.requireNonNull(value, "value"));
      return this;
    }

    /**
     * An HttpClient of your own (proxy, TLS, executor). Its connect timeout is yours to set;
     * {@link #timeout} still bounds each request.
     */
    public Builder httpClient(HttpClient httpClient) {
      this.httpClient = Objects.requireNonNull(httpClient, "httpClient");
      return this;
    }

    public RateLimiterClient build() {
      return new RateLimiterClient(this);
    }
  }
}
