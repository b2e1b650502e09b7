import type { SidecarUnavailableError } from "./errors.js";

/** The sidecar's verdict on an API key, from a closed list. */
export const VerifyCode = {
  VALID: "VALID",
  /** Malformed (bad checksum), or no such key. */
  NOT_FOUND: "NOT_FOUND",
  /** Past its expiry (a rotated key after its grace period). */
  EXPIRED: "EXPIRED",
  /** Revoked, or its customer deleted. */
  REVOKED: "REVOKED",
  /** Disabled, or its plan is gone. */
  DISABLED: "DISABLED",
  /** A required feature is not in the plan; nothing was charged. */
  FORBIDDEN: "FORBIDDEN",
  /** A rate limit of the key is used up. */
  RATE_LIMITED: "RATE_LIMITED",
  /** A calendar quota of the key is used up. */
  QUOTA_EXCEEDED: "QUOTA_EXCEEDED",
} as const;
export type VerifyCode = (typeof VerifyCode)[keyof typeof VerifyCode];

const CODES = new Set<string>(Object.values(VerifyCode));

/** One limit of the key, as the verification left it. */
export interface VerifiedLimit {
  readonly name: string;
  readonly limit: number;
  readonly remaining: number;
  readonly resetAt: Date;
  readonly exceeded: boolean;
}

/**
 * The verdict on a key; it never holds the key itself. `code` is null only when the sidecar
 * could not answer: `error` then says why and `valid` is the verify failure mode's answer
 * (false unless the client has `verifyFailureMode: "open"`). `keyId`, `customerId` and `plan`
 * are null for NOT_FOUND; `remaining` and `resetAt` (the tightest limit's) are null when no
 * limit was checked (the key was refused before, or FORBIDDEN).
 */
export class KeyVerification {
  readonly valid: boolean;
  readonly code: VerifyCode | null;
  readonly keyId: string | null;
  readonly customerId: string | null;
  readonly plan: string | null;
  readonly features: readonly string[];
  readonly remaining: number | null;
  readonly resetAt: Date | null;
  readonly limits: readonly VerifiedLimit[];
  readonly error: SidecarUnavailableError | null;

  constructor(fields: Partial<KeyVerification> & { valid: boolean }) {
    this.valid = fields.valid;
    this.code = fields.code ?? null;
    this.keyId = fields.keyId ?? null;
    this.customerId = fields.customerId ?? null;
    this.plan = fields.plan ?? null;
    this.features = fields.features ?? [];
    this.remaining = fields.remaining ?? null;
    this.resetAt = fields.resetAt ?? null;
    this.limits = fields.limits ?? [];
    this.error = fields.error ?? null;
  }

  /** The verdict from the JSON of /v1/keys/verify; throws TypeError when it is not one. */
  static fromJSON(doc: unknown): KeyVerification {
    const d = (typeof doc === "object" && doc !== null ? doc : {}) as Record<string, unknown>;
    if (typeof d.valid !== "boolean" || typeof d.code !== "string" || !CODES.has(d.code)) {
      throw new TypeError("the sidecar's answer is not a verification");
    }
    return new KeyVerification({
      valid: d.valid,
      code: d.code as VerifyCode,
      keyId: textOrNull(d.key_id),
      customerId: textOrNull(d.customer_id),
      plan: textOrNull(d.plan),
      features: Array.isArray(d.features) ? d.features.map(String) : [],
      remaining: typeof d.remaining === "number" ? d.remaining : null,
      resetAt: typeof d.reset_at === "string" ? new Date(d.reset_at) : null,
      limits: Array.isArray(d.limits) ? d.limits.map(verifiedLimit) : [],
    });
  }
}

function verifiedLimit(doc: unknown): VerifiedLimit {
  const d = (typeof doc === "object" && doc !== null ? doc : {}) as Record<string, unknown>;
  if (typeof d.name !== "string" || typeof d.limit !== "number" || typeof d.remaining !== "number") {
    throw new TypeError("the sidecar's answer is not a verification: a limit without name or numbers");
  }
  return {
    name: d.name,
    limit: d.limit,
    remaining: d.remaining,
    resetAt: new Date(String(d.reset_at)),
    exceeded: d.exceeded === true,
  };
}

function textOrNull(value: unknown): string | null {
  return typeof value === "string" ? value : null;
}
