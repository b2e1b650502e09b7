package io.viva.ratelimit;

/**
 * Base of every exception the client throws on purpose.
 *
 * <pre>
 * RateLimiterException
 * ├── InvalidRequestException      the sidecar refused the request as malformed (HTTP 400/413);
 * │                                field() names the culprit. Always thrown: it is a bug in the
 * │                                caller, not an outage.
 * └── SidecarUnavailableException  no answer after the retries (connection refused, timeout,
 *                                  503); thrown only with FailureMode.RAISE, otherwise the failure
 *                                  mode answers (allowed when OPEN, refused when CLOSED).
 * </pre>
 *
 * <p>Mistakes found before any call (an empty identifier, negative hits) are
 * {@link IllegalArgumentException}s.
 */
public class RateLimiterException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  public RateLimiterException(String message) {
    super(message);
  }

  public RateLimiterException(String message, Throwable cause) {
    super(message, cause);
  }
}
