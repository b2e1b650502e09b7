package io.viva.ratelimit;

/** The sidecar's verdict on an API key, from a closed list (the JSON {@code code}). */
public enum VerifyCode {
  VALID,
  /** Malformed (bad checksum), or no such key. */
  NOT_FOUND,
  /** Past its expiry (a rotated key after its grace period). */
  EXPIRED,
  /** Revoked, or its customer deleted. */
  REVOKED,
  /** Disabled, or its plan is gone. */
  DISABLED,
  /** A required feature is not in the plan; nothing was charged. */
  FORBIDDEN,
  /** A rate limit of the key is used up. */
  RATE_LIMITED,
  /** A calendar quota of the key is used up. */
  QUOTA_EXCEEDED
}
