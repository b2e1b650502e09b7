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
import java.util.function.BiFunction;

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
 *
 * <p>In full mode, {@link #verifyKey} authenticates an API key and charges its plan's limits in
 * one call; it needs the builder's {@code rootKey}, and has its own failure mode
 * ({@code verifyFailureMode}, {@link FailureMode#CLOSED} by default: a key that cannot be
 * verified is not valid).
 */
public final class RateLimiterClient {
  public static final String DEFAULT_ENDPOINT = "http://127.0.0.1:8080";
  /** Per attempt: a rate-limit check must never hold a request for long. */
  public static final Duration DEFAULT_TIMEOUT = Duration.ofMillis(500);

  private static final String USER_AGENT = "viva-ratelimit-java/0.1.0";
  private static final String VERIFY_PATH = "/v1/keys/verify";

  private final URI endpoint;
  private final Duration timeout;
  private final RetryPolicy retry;
  private final FailureMode failureMode;
  private final FailureMode verifyFailureMode;
  private final String rootKey; // sent with verifications only; never in toString
  private final Map<String, String> headers;
  private final HttpClient http;

  private RateLimiterClient(Builder b) {
    this.endpoint = Endpoint.parse(b.endpoint);
    this.timeout = b.timeout;
    this.retry = b.retry;
    this.failureMode = b.failureMode;
    this.verifyFailureMode = b.verifyFailureMode;
    this.rootKey = b.rootKey;
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
    return call(httpRequest("/v1/check", request), checks);
  }

  /** Charge usage known only afterwards (tokens, bytes); never refused, says where it stands. */
  public CheckResult report(CheckRequest request) {
    return call(httpRequest("/v1/report", request), checks);
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
    return callAsync(httpRequest("/v1/check", request), checks, 1);
  }

  public CompletableFuture<CheckResult> reportAsync(CheckRequest request) {
    return callAsync(httpRequest("/v1/report", request), checks, 1);
  }

  /** Full mode: verify {@code key}, charging 1 to each of its limits (see below). */
  public KeyVerification verifyKey(String key) {
    return verifyKey(VerifyKeyRequest.of(key));
  }

  /**
   * Full mode: authenticate the request's key and charge its plan's limits in one call
   * ({@code POST /v1/keys/verify}); the verdict is in {@link KeyVerification#code()}. Throws
   * {@link InvalidRequestException} for a malformed request and {@link UnauthorizedException}
   * without a root key or when the sidecar refuses it, whatever the failure mode; when the sidecar
   * cannot answer, the verify failure mode answers (or, with RAISE, throws
   * {@link SidecarUnavailableException}).
   */
  public KeyVerification verifyKey(VerifyKeyRequest request) {
    return call(verifyRequest(request), verifications);
  }

  /** {@link #verifyKey(VerifyKeyRequest)} without blocking a thread. */
  public CompletableFuture<KeyVerification> verifyKeyAsync(VerifyKeyRequest request) {
    try {
      return callAsync(verifyRequest(request), verifications, 1);
    } catch (UnauthorizedException | InvalidRequestException e) {
      return CompletableFuture.failedFuture(e);
    }
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

  public FailureMode verifyFailureMode() {
    return verifyFailureMode;
  }

  /** Whether {@link #verifyKey} has a root key to send (the key itself is never shown). */
  public boolean hasRootKey() {
    return rootKey != null;
  }

  @Override
  public String toString() {
    return "RateLimiterClient{endpoint=" + endpoint + ", timeout=" + timeout + ", failureMode="
        + failureMode + ", verifyFailureMode=" + verifyFailureMode
        + (rootKey == null ? "" : ", rootKey=<set>") + "}";
  }

  // -- one call: attempts, then the failure mode -----------------------------------------------

  /** How a kind of call reads an answer, and what it answers when the sidecar could not. */
  private record Exchange<T>(BiFunction<HttpResponse<String>, Integer, Attempt<T>> read,
      BiFunction<String, Integer, T> giveUp) {}

  private final Exchange<CheckResult> checks = new Exchange<>(
      (response, attempt) -> Attempt.check(response, attempt), this::giveUp);
  private final Exchange<KeyVerification> verifications = new Exchange<>(
      (response, attempt) -> Attempt.verdict(response), this::giveUpVerify);

  private <T> T call(HttpRequest httpRequest, Exchange<T> exchange) {
    for (int attempt = 1; ; attempt++) {
      Attempt<T> outcome;
      try {
        outcome = exchange.read().apply(http.send(httpRequest,
            HttpResponse.BodyHandlers.ofString()), attempt);
      } catch (IOException e) {
        outcome = Attempt.failed(e);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return exchange.giveUp().apply("interrupted while waiting for the sidecar", attempt);
      }
      if (outcome.value() != null) {
        return outcome.value();
      }
      if (!outcome.retryable() || attempt >= retry.attempts()) {
        return exchange.giveUp().apply(outcome.error(), attempt);
      }
      try {
        Thread.sleep(retry.delay(attempt - 1).toMillis());
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return exchange.giveUp().apply(outcome.error(), attempt);
      }
    }
  }

  private <T> CompletableFuture<T> callAsync(HttpRequest httpRequest, Exchange<T> exchange,
      int attempt) {
    return http.sendAsync(httpRequest, HttpResponse.BodyHandlers.ofString())
        .handle((response, failure) -> failure == null
            ? exchange.read().apply(response, attempt) : Attempt.<T>failed(unwrap(failure)))
        .thenCompose(outcome -> {
          if (outcome.value() != null) {
            return CompletableFuture.completedFuture(outcome.value());
          }
          if (!outcome.retryable() || attempt >= retry.attempts()) {
            return giveUpAsync(exchange, outcome.error(), attempt);
          }
          long pause = retry.delay(attempt - 1).toMillis();
          return CompletableFuture.runAsync(() -> { },
                  CompletableFuture.delayedExecutor(pause, TimeUnit.MILLISECONDS))
              .thenCompose(ignored -> callAsync(httpRequest, exchange, attempt + 1));
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

  private HttpRequest verifyRequest(VerifyKeyRequest request) {
    Objects.requireNonNull(request, "request");
    if (rootKey == null) {
      throw new UnauthorizedException("verifyKey needs a root key with the scope keys:verify: "
          + "RateLimiterClient.builder().rootKey(...)", null);
    }
    HttpRequest.Builder builder = HttpRequest.newBuilder(URI.create(endpoint + VERIFY_PATH))
        .timeout(timeout)
        .header("Content-Type", "application/json")
        .header("Accept", "application/json")
        .header("User-Agent", USER_AGENT)
        .POST(HttpRequest.BodyPublishers.ofString(request.toJson()));
    headers.forEach(builder::setHeader);
    return builder.setHeader("Authorization", "Bearer " + rootKey).build();
  }

  private CheckResult giveUp(String error, int attempts) {
    if (failureMode == FailureMode.RAISE) {
      throw new SidecarUnavailableException(error, attempts);
    }
    return CheckResult.failure(failureMode, error, attempts);
  }

  private KeyVerification giveUpVerify(String error, int attempts) {
    if (verifyFailureMode == FailureMode.RAISE) {
      throw new SidecarUnavailableException(error, attempts);
    }
    return KeyVerification.failure(verifyFailureMode, error, attempts);
  }

  private static <T> CompletableFuture<T> giveUpAsync(Exchange<T> exchange, String error,
      int attempts) {
    try {
      return CompletableFuture.completedFuture(exchange.giveUp().apply(error, attempts));
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

  /** What one attempt gave: a value, or an error that may be worth another attempt. */
  private record Attempt<T>(T value, String error, boolean retryable) {

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
    private FailureMode verifyFailureMode = FailureMode.CLOSED;
    private String rootKey;
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

    /** Full mode: the root key (scope {@code keys:verify}) that {@link #verifyKey} sends. */
    public Builder rootKey(String rootKey) {
      if (rootKey == null || rootKey.isBlank()) {
        throw new IllegalArgumentException("rootKey must be a non-empty string");
      }
      this.rootKey = rootKey;
      return this;
    }

    /** {@link #verifyKey}'s answer when the sidecar cannot answer (default CLOSED). */
    public Builder verifyFailureMode(FailureMode verifyFailureMode) {
      this.verifyFailureMode = Objects.requireNonNull(verifyFailureMode, "verifyFailureMode");
      return this;
    }

    @Override
    public String toString() {
      return "RateLimiterClient.Builder{endpoint=" + endpoint + (rootKey == null ? ""
          : ", rootKey=<set>") + "}";
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
