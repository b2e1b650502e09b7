package io.viva.ratelimit;

/**
 * What an unreachable sidecar means, once the retries have run out: no connection, no answer in
 * time, or a 503 (its store is down). A malformed request (HTTP 400) is never covered: it always throws
 * {@link InvalidRequestException}.
 */
public enum FailureMode {
  /** Allow, with {@link CheckResult#error()} set: rate limiting is protection, not a gate. */
  OPEN,
  /** Refuse, with {@link CheckResult#error()} set (middleware answers 503). */
  CLOSED,
  /** Throw {@link SidecarUnavailableException}. */
  RAISE
}
