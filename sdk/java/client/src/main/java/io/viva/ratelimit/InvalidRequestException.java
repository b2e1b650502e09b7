package io.viva.ratelimit;

import java.util.Optional;

/** The sidecar says the request is invalid; {@link #field()} names the culprit when it can. */
public class InvalidRequestException extends RateLimiterException {
  private static final long serialVersionUID = 1L;

  private final String field;

  public InvalidRequestException(String message, String field) {
    super(message);
    this.field = field;
  }

  /** The request field at fault, e.g. {@code descriptors[0][1].key} or {@code hits}. */
  public Optional<String> field() {
    return Optional.ofNullable(field);
  }
}
