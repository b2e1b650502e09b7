package io.viva.ratelimit;

/**
 * The sidecar could not be asked (connection refused or timed out, no answer in time) or could
 * not decide (an HTTP 503: its store is down). Thrown only with {@link FailureMode#RAISE};
 * otherwise the failure mode answers, with {@link CheckResult#error()} set.
 */
public class SidecarUnavailableException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  private final int attempts;

  public SidecarUnavailableException(String message, int attempts) {
    super(message);
    this.attempts = attempts;
  }

  /** The tries made, the first included. */
  public int attempts() {
    return attempts;
  }
}
