/**
 * Every error the client raises or reports on purpose.
 *
 *     RateLimitClientError
 *     ├── InvalidRequestError     the request is malformed (caught before sending, or a 400/413
 *     │                           from the sidecar); `field` names the culprit. Always thrown:
 *     │                           it is a bug in the caller, not an outage.
 *     ├── UnauthorizedError       verifyKey without a root key, or the sidecar refused it (401,
 *     │                           or 403 without the scope keys:verify). Always thrown: a wrong
 *     │                           credential must never read as valid keys.
 *     ├── SidecarUnavailableError the sidecar could not decide (unreachable after the retries,
 *     │                           too slow, or it answered an error such as 503); never thrown:
 *     │                           the failure mode answers and `result.error` holds it.
 *     └── LeaseRefusedError       `lease()` or `withLease()` could not take a slot: every one is
 *                                 held, or the sidecar is out of reach and the failure mode is
 *                                 "closed"; `result` is the LeaseResult that says so.
 *
 * No message ever holds an API key or the root key.
 */

import type { LeaseResult } from "./lease.js";

export class RateLimitClientError extends Error {
  override name = "RateLimitClientError";
}

export class InvalidRequestError extends RateLimitClientError {
  override name = "InvalidRequestError";
  /** The JSON path of the culprit, e.g. `descriptors[0][1].key`; null for the whole request. */
  readonly field: string | null;
  /** The sidecar's HTTP status; null when the client caught the mistake itself. */
  readonly status: number | null;

  constructor(message: string, field: string | null, status: number | null = null) {
    super(message);
    this.field = field;
    this.status = status;
  }

  static field(field: string, problem: string): InvalidRequestError {
    return new InvalidRequestError(`${field}: ${problem}`, field);
  }
}

export class UnauthorizedError extends RateLimitClientError {
  override name = "UnauthorizedError";
  /** The sidecar's status (401 or 403); null when the client has no root key (nothing sent). */
  readonly status: number | null;

  constructor(message: string, status: number | null) {
    super(message);
    this.status = status;
  }
}

export class SidecarUnavailableError extends RateLimitClientError {
  override name = "SidecarUnavailableError";
  /** How many tries were made. */
  readonly attempts: number;

  constructor(message: string, attempts: number, cause?: unknown) {
    super(`the sidecar could not decide (${attempts} attempt${attempts === 1 ? "" : "s"}): ${message}`, {
      cause,
    });
    this.attempts = attempts;
  }
}

export class LeaseRefusedError extends RateLimitClientError {
  override name = "LeaseRefusedError";
  /** The sidecar's answer (active, limit, retryAfterSeconds), or the failure mode's (error). */
  readonly result: LeaseResult;

  constructor(result: LeaseResult) {
    super(
      result.error !== null
        ? `lease refused: the sidecar could not be asked (${result.error.message})`
        : `lease refused: ${result.active} of ${result.limit} held for ${JSON.stringify(result.policy)}` +
            (result.retryAfterSeconds === null ? "" : `; a slot frees within ${result.retryAfterSeconds} s`),
      { cause: result.error ?? undefined },
    );
    this.result = result;
  }
}
