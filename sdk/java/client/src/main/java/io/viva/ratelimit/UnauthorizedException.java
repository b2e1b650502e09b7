package io.viva.ratelimit;

import java.util.OptionalInt;

/**
 * A verification without a root key (nothing was sent: {@link #status()} is empty), or the
 * sidecar refused the root key: 401 (not valid) or 403 (no scope {@code keys:verify}).
 *
 * <p>Always thrown, whatever the failure mode: a wrong credential must never read as valid keys.
 * The message never holds the root key or the API key.
 */
public class UnauthorizedException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  private final Integer status;

  public UnauthorizedException(String message, Integer status) {
    super(message);
    this.status = status;
  }

  /** The sidecar's HTTP status; empty when the client has no root key. */
  public OptionalInt status() {
    return status == null ? OptionalInt.empty() : OptionalInt.of(status);
  }
}
