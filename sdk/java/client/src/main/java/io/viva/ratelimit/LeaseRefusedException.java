package io.viva.ratelimit;

/**
 * {@link RateLimiterClient#lease} could not take a slot: every one is held ({@link #result()}
 * says how many and how long to wait), or the sidecar could not be asked and the failure mode
 * is {@link FailureMode#CLOSED} ({@code result().error()} says why).
 */
public class LeaseRefusedException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  private final transient LeaseResult result;

  public LeaseRefusedException(LeaseResult result) {
    super(message(result));
    this.result = result;
  }

  /** The answer that refused. */
  public LeaseResult result() {
    return result;
  }

  private static String message(LeaseResult r) {
    if (r.error().isPresent()) {
      return "lease refused: the sidecar could not be asked (" + r.error().get() + ")";
    }
    String text = "lease refused: " + r.active().orElse(0) + " of " + r.limit().orElse(0)
        + " held for '" + r.policy().orElse("") + "'";
    return r.retryAfterSeconds().isPresent()
        ? text + "; a slot frees within " + r.retryAfterSeconds().getAsLong() + " s" : text;
  }
}
