package io.viva.ratelimit;

import java.util.Optional;

/**
 * The request is malformed: refused by the client before sending (an empty identifier or
 * namespace, negative hits) or by the sidecar with HTTP 400/413. {@link #field()} names the
 * culprit when it can, e.g. {@code identifier}, {@code hits} or {@code descriptors[0][1].key}.
 *
 * <p>Always thrown, whatever the {@link FailureMode}: it is a bug in the caller, not an outage,
 * and retrying cannot help.
 */
public class InvalidRequestException extends IllegalArgumentException {
  private static final long serialVersionUID = 1L;

  private final String field;

  public InvalidRequestException(String message, String field) {
    super(message);
    this.field = field;
  }

  /** The request field at fault. */
  public Optional<String> field() {
    return Optional.ofNullable(field);
  }
}
