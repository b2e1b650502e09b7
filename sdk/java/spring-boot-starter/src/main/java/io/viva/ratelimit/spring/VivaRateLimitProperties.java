package io.viva.ratelimit.spring;

import io.viva.ratelimit.FailureMode;
import io.viva.ratelimit.RateLimiterClient;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.springframework.boot.context.properties.ConfigurationProperties;

/** {@code viva.ratelimit.*}: the client, and the servlet filter under {@code filter.*}. */
@ConfigurationProperties(prefix = "viva.ratelimit")
public class VivaRateLimitProperties {
  /** The sidecar's HTTP port: a URL (http://localhost:8080) or host:port. */
  private String endpoint = RateLimiterClient.DEFAULT_ENDPOINT;

  /** Per attempt: connecting, and waiting for the answer. */
  private Duration timeout = RateLimiterClient.DEFAULT_TIMEOUT;

  /** When the sidecar cannot answer: open (allow), closed (refuse; the filter answers 503) or
   *  raise (throw SidecarUnavailableException). */
  private FailureMode failureMode = FailureMode.OPEN;

  /** Full mode: the root key (scope keys:verify) the client's verifyKey sends; keep it in the
   *  environment ({@code VIVA_RATELIMIT_ROOT_KEY}) or a secret store, not in a file. */
  private String rootKey;

  /** When the sidecar cannot answer a verification: closed (not valid), open (valid, without a
   *  code) or raise. */
  private FailureMode verifyFailureMode = FailureMode.CLOSED;

  private final Retry retry = new Retry();

  private final Filter filter = new Filter();

  /** Retries of calls that never reached the sidecar (connection refused or timed out). */
  public static class Retry {
    /** Tries in all, the first included (1: no retry). */
    private int attempts = 3;

    /** The first pause; each next one doubles, with full jitter. */
    private Duration backoff = Duration.ofMillis(50);

    /** The longest pause. */
    private Duration maxBackoff = Duration.ofSeconds(1);

    public int getAttempts() {
      return attempts;
    }

    public void setAttempts(int attempts) {
      this.attempts = attempts;
    }

    public Duration getBackoff() {
      return backoff;
    }

    public void setBackoff(Duration backoff) {
      this.backoff = backoff;
    }

    public Duration getMaxBackoff() {
      return maxBackoff;
    }

    public void setMaxBackoff(Duration maxBackoff) {
      this.maxBackoff = maxBackoff;
    }
  }

  /** The servlet filter; registered when {@code namespace} is set. */
  public static class Filter {
    /** Turns the filter off while keeping the client bean. */
    private boolean enabled = true;

    /** The namespace (rules domain) every request is checked in. */
    private String namespace;

    /** Hits charged per request. */
    private long hits = 1;

    /** Header families added to responses: ietf, x, retry-after. */
    private List<String> headers = new ArrayList<>(List.of("ietf", "x", "retry-after"));

    /** URL patterns the filter applies to. */
    private List<String> urlPatterns = new ArrayList<>(List.of("/*"));

    /** The filter's order; 0 runs after Spring Security's chain (-100), so that an identifier
     *  resolver can read the authenticated user. */
    private int order = 0;

    public boolean isEnabled() {
      return enabled;
    }

    public void setEnabled(boolean enabled) {
      this.enabled = enabled;
    }

    public String getNamespace() {
      return namespace;
    }

    public void setNamespace(String namespace) {
      this.namespace = namespace;
    }

    public long getHits() {
      return hits;
    }

    public void setHits(long hits) {
      this.hits = hits;
    }

    public List<String> getHeaders() {
      return headers;
    }

    public void setHeaders(List<String> headers) {
      this.headers = headers;
    }

    public List<String> getUrlPatterns() {
      return urlPatterns;
    }

    public void setUrlPatterns(List<String> urlPatterns) {
      this.urlPatterns = urlPatterns;
    }

    public int getOrder() {
      return order;
    }

    public void setOrder(int order) {
      this.order = order;
    }
  }

  public String getEndpoint() {
    return endpoint;
  }

  public void setEndpoint(String endpoint) {
    this.endpoint = endpoint;
  }

  public Duration getTimeout() {
    return timeout;
  }

  public void setTimeout(Duration timeout) {
    this.timeout = timeout;
  }

  public FailureMode getFailureMode() {
    return failureMode;
  }

  public void setFailureMode(FailureMode failureMode) {
    this.failureMode = failureMode;
  }

  public String getRootKey() {
    return rootKey;
  }

  public void setRootKey(String rootKey) {
    this.rootKey = rootKey;
  }

  public FailureMode getVerifyFailureMode() {
    return verifyFailureMode;
  }

  public void setVerifyFailureMode(FailureMode verifyFailureMode) {
    this.verifyFailureMode = verifyFailureMode;
  }

  public Retry getRetry() {
    return retry;
  }

  public Filter getFilter() {
    return filter;
  }
}
