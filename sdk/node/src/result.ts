import type { SidecarUnavailableError } from "./errors.js";
import { HEADER_FAMILIES, type HeaderFamily, rateLimitHeaders } from "./headers.js";

/**
 * The sidecar's decision for a request and, when it was sent as descriptors, for each of them
 * in `results`. `limit` and the fields after it are null when no limit applies (a namespace
 * without rules, an unlimited or exempt identifier). `error` is set when the sidecar could not
 * decide and the failure mode answered (`allowed` is then true for "open", false for "closed").
 */
export class CheckResult {
  readonly allowed: boolean;
  readonly limit: number | null;
  readonly remaining: number | null;
  readonly resetAt: Date | null;
  readonly resetAfterSeconds: number | null;
  readonly retryAfterSeconds: number | null;
  readonly windowSeconds: number | null;
  readonly policy: string | null;
  readonly results: readonly CheckResult[];
  readonly error: SidecarUnavailableError | null;

  constructor(fields: Partial<CheckResult> & { allowed: boolean }) {
    this.allowed = fields.allowed;
    this.limit = fields.limit ?? null;
    this.remaining = fields.remaining ?? null;
    this.resetAt = fields.resetAt ?? null;
    this.resetAfterSeconds = fields.resetAfterSeconds ?? null;
    this.retryAfterSeconds = fields.retryAfterSeconds ?? null;
    this.windowSeconds = fields.windowSeconds ?? null;
    this.policy = fields.policy ?? null;
    this.results = fields.results ?? [];
    this.error = fields.error ?? null;
  }

  /** The response headers the sidecar would send for this result. */
  headers(families: readonly HeaderFamily[] = HEADER_FAMILIES): Array<[string, string]> {
    return rateLimitHeaders(this, families);
  }

  /** A result from the JSON of /v1/check or /v1/report; throws TypeError when it is not one. */
  static fromJSON(doc: unknown): CheckResult {
    if (typeof doc !== "object" || doc === null || typeof (doc as { allowed?: unknown }).allowed !== "boolean") {
      throw new TypeError("the answer is not a check result");
    }
    const d = doc as Record<string, unknown>;
    const results = Array.isArray(d.results) ? d.results.map((r) => CheckResult.fromJSON(r)) : [];
    return new CheckResult({
      allowed: d.allowed as boolean,
      limit: numberOrNull(d.limit),
      remaining: numberOrNull(d.remaining),
      resetAt: typeof d.reset_at === "string" ? new Date(d.reset_at) : null,
      resetAfterSeconds: numberOrNull(d.reset_after_seconds),
      retryAfterSeconds: numberOrNull(d.retry_after_seconds),
      windowSeconds: numberOrNull(d.window_seconds),
      policy: typeof d.policy === "string" ? d.policy : null,
      results,
    });
  }
}

function numberOrNull(value: unknown): number | null {
  return typeof value === "number" ? value : null;
}
