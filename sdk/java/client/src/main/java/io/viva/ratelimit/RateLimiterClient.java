package io.viva.ratelimit;

import java.io.IOException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
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
 * Client of the sidecar's REST API ({@code POST /v1/check}, {@code POST /v1/report}, leases of
 * a concurrency limit, full mode's key verification); thread-safe,
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
  private static final String LEASES_PATH = "/v1/leases";

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

  // -- leases of a concurrency limit (Lease, LeaseRequest, LeaseResult) ---------------------------

  /** {@link #lease(LeaseRequest)} of {@code identifier}'s slot in {@code namespace}. */
  public Lease lease(String identifier, String namespace) {
    return lease(LeaseRequest.of(identifier, namespace));
  }

  /**
   * Take a slot of a concurrency limit (a rule with {@code algorithm: concurrency}) and keep it
   * renewed in the background until the {@link Lease} is closed: use it in try-with-resources.
   * Throws {@link LeaseRefusedException} when every slot is held, or when the sidecar cannot be
   * asked and the failure mode is CLOSED (RAISE: {@link SidecarUnavailableException}); with OPEN
   * the lease holds nothing and the work goes ahead ({@code held()} false). A namespace or
   * identifier without a concurrency limit holds nothing too.
   */
  public Lease lease(LeaseRequest request) {
    return Lease.hold(this, request, acquireLease(request));
  }

  /** {@link #lease(LeaseRequest)} without blocking a thread for the acquire. */
  public CompletableFuture<Lease> leaseAsync(LeaseRequest request) {
    return acquireLeaseAsync(request).thenApply(result -> Lease.hold(this, request, result));
  }

  /**
   * Take a slot ({@code leaseId}) or learn that none is free ({@code allowed} false, with
   * {@code active} and {@code retryAfterSeconds}); renew and release it yourself. When the
   * sidecar cannot be asked the failure mode answers, as for {@link #check}. A ttl above the
   * rule's {@code lease_ttl} throws {@link InvalidRequestException} naming {@code ttl}.
   */
  public LeaseResult acquireLease(LeaseRequest request) {
    return call(leaseRequest(request), leases);
  }

  public CompletableFuture<LeaseResult> acquireLeaseAsync(LeaseRequest request) {
    return callAsync(leaseRequest(request), leases, 1);
  }

  /** Hold the lease as long again as at its acquire; {@code allowed} false once it is gone. */
  public LeaseResult renewLease(String leaseId) {
    return renewLease(leaseId, null);
  }

  /** Hold the lease {@code ttl} from now (null: as long as at its acquire). */
  public LeaseResult renewLease(String leaseId, Duration ttl) {
    return call(renewRequest(leaseId, ttl), leases);
  }

  public CompletableFuture<LeaseResult> renewLeaseAsync(String leaseId) {
    return renewLeaseAsync(leaseId, null);
  }

  public CompletableFuture<LeaseResult> renewLeaseAsync(String leaseId, Duration ttl) {
    try {
      return callAsync(renewRequest(leaseId, ttl), leases, 1);
    } catch (InvalidRequestException e) {
      return CompletableFuture.failedFuture(e);
    }
  }

  /** Free the lease's slots; {@code released} false when it was gone already (or, with
   *  {@code error}, when the sidecar could not be asked: it then expires with its ttl). */
  public ReleaseResult releaseLease(String leaseId) {
    return call(releaseRequest(leaseId), releases);
  }

  public CompletableFuture<ReleaseResult> releaseLeaseAsync(String leaseId) {
    try {
      return callAsync(releaseRequest(leaseId), releases, 1);
    } catch (InvalidRequestException e) {
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
  private final Exchange<LeaseResult> leases = new Exchange<>(Attempt::lease, this::giveUpLease);
  private final Exchange<ReleaseResult> releases = new Exchange<>(Attempt::release,
      this::giveUpRelease);

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
    return requestBuilder("POST", path, request.toJson()).build();
  }

  private HttpRequest leaseRequest(LeaseRequest request) {
    Objects.requireNonNull(request, "request");
    return requestBuilder("POST", LEASES_PATH, request.toJson()).build();
  }

  private HttpRequest renewRequest(String leaseId, Duration ttl) {
    if (ttl != null && (ttl.isNegative() || ttl.isZero())) {
      throw new InvalidRequestException("ttl must be a positive duration, not " + ttl, "ttl");
    }
    String body = ttl == null ? "{}" : Json.write(Map.of("ttl", ttl.toNanos() / 1e9));
    return requestBuilder("POST", leasePath(leaseId) + "/renew", body).build();
  }

  private HttpRequest releaseRequest(String leaseId) {
    return requestBuilder("DELETE", leasePath(leaseId), null).build();
  }

  private static String leasePath(String leaseId) {
    Descriptor.requireText(leaseId, "lease_id");
    return LEASES_PATH + "/" + URLEncoder.encode(leaseId, StandardCharsets.UTF_8)
        .replace("+", "%20");
  }

  /** A request to the sidecar with the client's headers; {@code json} null: no body. */
  private HttpRequest.Builder requestBuilder(String method, String path, String json) {
    HttpRequest.Builder builder = HttpRequest.newBuilder(URI.create(endpoint + path))
        .timeout(timeout)
        .header("Accept", "application/json")
        .header("User-Agent", USER_AGENT)
        .method(method, json == null ? HttpRequest.BodyPublishers.noBody()
            : HttpRequest.BodyPublishers.ofString(json));
    if (json != null) {
      builder.header("Content-Type", "application/json");
    }
    headers.forEach(builder::setHeader);
    return builder;
  }

  private HttpRequest verifyRequest(VerifyKeyRequest request) {
    Objects.requireNonNull(request, "request");
    if (rootKey == null) {
      throw new UnauthorizedException("verifyKey needs a root key with the scope keys:verify: "
          + "RateLimiterClient.builder().rootKey(...)", null);
    }
    return requestBuilder("POST", VERIFY_PATH, request.toJson())
        .setHeader("Authorization", "Bearer " + rootKey).build();
  }

  private CheckResult giveUp(String error, int attempts) {
    if (failureMode == FailureMode.RAISE) {
      throw new SidecarUnavailableException(error, attempts);
    }
    return CheckResult.failure(failureMode, error, attempts);
  }

  private LeaseResult giveUpLease(String error, int attempts) {
    if (failureMode == FailureMode.RAISE) {
      throw new SidecarUnavailableException(error, attempts);
    }
    return LeaseResult.failure(failureMode, error, attempts);
  }

  private ReleaseResult giveUpRelease(String error, int attempts) {
    if (failureMode == FailureMode.RAISE) {
      throw new SidecarUnavailableException(error, attempts);
    }
    return new ReleaseResult(false, null, null, error, attempts);
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
