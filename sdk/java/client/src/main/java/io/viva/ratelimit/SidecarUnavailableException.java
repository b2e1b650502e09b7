package io.viva.ratelimit;

/** The sidecar could not be asked or could not decide (only with {@link FailureMode#RAISE}). */
public class SidecarUnavailableException extends RateLimiterException {
  private static final long serialVersionUID = 1L;

  public SidecarUnavailableException(String message) {
    super(message);
  }
}
