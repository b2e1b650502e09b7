/**
 * Leases of a concurrency limit (a rule with `algorithm: concurrency`): what the sidecar answers
 * (`LeaseResult`, `ReleaseResult`) and the `Lease` a client holds.
 *
 *     await client.withLease("user_1", "ws", async (lease) => {   // LeaseRefusedError when full
 *       await serveTheWebSocket();                                // renewed in the background
 *     });                                                         // released, whatever happened
 *
 * While a lease is held it is renewed every third of its time to live (the sidecar says how long
 * that is), so it outlives any number of them; a holder that dies stops renewing, and its slot
 * frees when the lease expires. If the sidecar answers that the lease is gone (expired during a
 * long pause, say), `lease.lost` turns true and `onLost` is called; if the sidecar cannot be
 * reached, renewals keep being tried, and with failure mode "closed" the lease counts as lost
 * once its time to live has passed without one getting through.
 */
import type { Client, Descriptor } from "./client.js";
import { InvalidRequestError, LeaseRefusedError, SidecarUnavailableError } from "./errors.js";

/** The shortest interval between two renewals of a held lease, in milliseconds. */
export const MIN_RENEW_EVERY_MS = 50;

/** What `acquireLease` asks for: a slot of `identifier`'s concurrency limit, or of each descriptor. */
export interface LeaseRequest {
  namespace: string;
  identifier?: string;
  descriptors?: readonly Descriptor[];
  /** How long the lease holds unless renewed (default and most: the rule's lease_ttl). */
  ttlMs?: number;
}

/** How `lease` and `withLease` take and keep a lease. */
export interface LeaseOptions {
  /** How long a dead holder keeps its slot (default and most: the rule's lease_ttl). */
  ttlMs?: number;
  /** A slot on each of these (all of them or none) instead of the identifier's. */
  descriptors?: readonly Descriptor[];
  /** Renew at this interval instead of every third of the time to live. */
  renewEveryMs?: number;
  /** Called when the lease is lost (see `Lease.lost`); what it throws or rejects is unhandled. */
  onLost?: (lease: Lease) => unknown;
}

/**
 * The sidecar's answer to an acquire or a renewal. `allowed`: the lease holds its slots (a
 * renewal: still holds them; false once the lease is gone). `leaseId` renews and releases it
 * (null when nothing is held: refused, no concurrency limit applies, or the failure mode
 * answered). `active` and `limit`: the leases held and the rule's max. `expiresAt` (the
 * sidecar's clock) and `ttlSeconds`: until when, and for how long, the lease holds unless
 * renewed. `retryAfterSeconds`, when refused: the longest wait for a holder's lease to expire.
 * `error`: the sidecar could not be asked and the failure mode answered.
 */
export class LeaseResult {
  readonly allowed: boolean;
  readonly leaseId: string | null;
  readonly active: number | null;
  readonly limit: number | null;
  readonly expiresAt: Date | null;
  readonly ttlSeconds: number | null;
  readonly retryAfterSeconds: number | null;
  readonly policy: string | null;
  readonly results: readonly LeaseResult[];
  readonly error: SidecarUnavailableError | null;

  constructor(fields: Partial<LeaseResult> & { allowed: boolean }) {
    this.allowed = fields.allowed;
    this.leaseId = fields.leaseId ?? null;
    this.active = fields.active ?? null;
    this.limit = fields.limit ?? null;
    this.expiresAt = fields.expiresAt ?? null;
    this.ttlSeconds = fields.ttlSeconds ?? null;
    this.retryAfterSeconds = fields.retryAfterSeconds ?? null;
    this.policy = fields.policy ?? null;
    this.results = fields.results ?? [];
    this.error = fields.error ?? null;
  }

  /** A lease from the JSON of /v1/leases or a renewal; throws TypeError when it is not one. */
  static fromJSON(doc: unknown): LeaseResult {
    const d = (typeof doc === "object" && doc !== null ? doc : {}) as Record<string, unknown>;
    if (typeof d.allowed !== "boolean") throw new TypeError("the sidecar's answer is not a lease");
    return new LeaseResult({
      allowed: d.allowed,
      leaseId: typeof d.lease_id === "string" ? d.lease_id : null,
      active: numberOrNull(d.active),
      limit: numberOrNull(d.limit),
      expiresAt: typeof d.expires_at === "string" ? new Date(d.expires_at) : null,
      ttlSeconds: numberOrNull(d.ttl_seconds),
      retryAfterSeconds: numberOrNull(d.retry_after_seconds),
      policy: typeof d.policy === "string" ? d.policy : null,
      results: Array.isArray(d.results) ? d.results.map((r) => LeaseResult.fromJSON(r)) : [],
    });
  }
}

/**
 * A release: `released` when the sidecar freed the lease's slots (false: it was gone already,
 * or, with `error`, the sidecar could not be asked and the lease expires with its time to
 * live); `active` and `limit` after it.
 */
export class ReleaseResult {
  readonly released: boolean;
  readonly active: number | null;
  readonly limit: number | null;
  readonly error: SidecarUnavailableError | null;

  constructor(fields: Partial<ReleaseResult> & { released: boolean }) {
    this.released = fields.released;
    this.active = fields.active ?? null;
    this.limit = fields.limit ?? null;
    this.error = fields.error ?? null;
  }

  static fromJSON(doc: unknown): ReleaseResult {
    const d = (typeof doc === "object" && doc !== null ? doc : {}) as Record<string, unknown>;
    if (typeof d.released !== "boolean") throw new TypeError("the sidecar's answer is not a release");
    return new ReleaseResult({ released: d.released, active: numberOrNull(d.active), limit: numberOrNull(d.limit) });
  }
}

/**
 * A slot of a concurrency limit, taken by `client.lease()`: renewed by a timer while held
 * (the timer does not keep the process alive), released by `release()` or by `await using`.
 */
export class Lease implements AsyncDisposable {
  readonly #client: Client;
  readonly #renewEveryMs: number | undefined;
  readonly #onLost: ((lease: Lease) => unknown) | undefined;
  #result: LeaseResult;
  #confirmed = Date.now(); // when the sidecar last said that the lease holds
  #timer: ReturnType<typeof setTimeout> | undefined;
  #released = false;
  /** The lease no longer holds its slots: the sidecar said it is gone, or (failure mode
   * "closed") no renewal got through for a whole time to live. Renewals stop then. */
  lost = false;

  private constructor(client: Client, result: LeaseResult, options: LeaseOptions) {
    this.#client = client;
    this.#result = result;
    this.#renewEveryMs = options.renewEveryMs;
    this.#onLost = options.onLost;
  }

  /** Take the slot (LeaseRefusedError when refused) and start renewing it. */
  static async acquire(
    client: Client,
    identifier: string | null,
    namespace: string,
    options: LeaseOptions,
  ): Promise<Lease> {
    const result = await client.acquireLease({
      namespace,
      ...(identifier === null ? {} : { identifier }),
      ...(options.descriptors === undefined ? {} : { descriptors: options.descriptors }),
      ...(options.ttlMs === undefined ? {} : { ttlMs: options.ttlMs }),
    });
    if (!result.allowed) throw new LeaseRefusedError(result);
    const lease = new Lease(client, result, options);
    lease.#schedule();
    return lease;
  }

  /** The acquire's answer, then the last renewal's that confirmed the lease. */
  get result(): LeaseResult {
    return this.#result;
  }

  /** The lease's id; null when nothing is held (the failure mode let the caller through, or no
   * concurrency limit applies). */
  get id(): string | null {
    return this.#result.leaseId;
  }

  /** Whether a slot is held now: false when nothing was taken, once lost, and after release. */
  get held(): boolean {
    return this.id !== null && !this.lost && !this.#released;
  }

  /** Renew now (the timer does anyway); a lease holding nothing answers its result untouched. */
  async renew(): Promise<LeaseResult> {
    if (!this.held) return this.#result;
    const result = await this.#client.renewLease(this.id as string);
    if (!this.#released) this.#take(result);
    return result;
  }

  /** Stop renewing and free the slot, once; a lease holding nothing or lost sends nothing. */
  async release(): Promise<ReleaseResult> {
    clearTimeout(this.#timer);
    const send = this.held;
    this.#released = true;
    return send ? this.#client.releaseLease(this.id as string) : new ReleaseResult({ released: false });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }

  #schedule(): void {
    const ttl = this.#result.ttlSeconds;
    if (!this.held || ttl === null || ttl <= 0) return;
    const every = Math.max(MIN_RENEW_EVERY_MS, this.#renewEveryMs ?? (ttl * 1000) / 3);
    this.#timer = setTimeout(() => void this.#renewInBackground(), every);
    this.#timer.unref();
  }

  async #renewInBackground(): Promise<void> {
    let result: LeaseResult;
    try {
      result = await this.#client.renewLease(this.id as string);
    } catch (error) {
      // An InvalidRequestError cannot come from an id the sidecar gave; treat it as an outage.
      result = new LeaseResult({ allowed: false, error: new SidecarUnavailableError(String(error), 1, error) });
    }
    if (this.#released) return;
    if (this.#take(result)) this.#schedule();
  }

  /** Take a renewal's answer in; false once the lease is lost. */
  #take(result: LeaseResult): boolean {
    if (this.lost) return false;
    if (result.allowed && result.error === null) {
      this.#result = result;
      this.#confirmed = Date.now();
      return true;
    }
    const gone = result.error === null; // the sidecar said so; an error is an outage
    const ttl = this.#result.ttlSeconds ?? Number.POSITIVE_INFINITY;
    const unconfirmed = this.#client.failureMode === "closed" && Date.now() - this.#confirmed > ttl * 1000;
    if (!gone && !unconfirmed) return true;
    this.lost = true;
    clearTimeout(this.#timer);
    if (this.#onLost !== undefined) void Promise.resolve(this.#onLost(this));
    return false;
  }
}

/** The JSON body of POST /v1/leases, from a check body without hits. */
export function leaseBody(request: LeaseRequest, body: Record<string, unknown>): Record<string, unknown> {
  const { hits: _, ...rest } = body;
  return request.ttlMs === undefined ? rest : { ...rest, ttl: ttlSeconds(request.ttlMs) };
}

/** A ttl in ms as the sidecar's seconds; InvalidRequestError naming `ttl` when not a duration. */
export function ttlSeconds(ttlMs: number): number {
  if (typeof ttlMs !== "number" || !Number.isFinite(ttlMs) || ttlMs < 1) {
    throw InvalidRequestError.field("ttl", `${String(ttlMs)} ms is not a duration of at least 1 ms`);
  }
  return ttlMs / 1000;
}

/** The path of a lease (and of its renewal with "/renew"); InvalidRequestError for no id. */
export function leasePath(leaseId: string, suffix = ""): string {
  if (typeof leaseId !== "string" || leaseId === "") {
    throw InvalidRequestError.field("lease_id", "must be the leaseId of an acquire, not empty");
  }
  return `/v1/leases/${encodeURIComponent(leaseId)}${suffix}`;
}

function numberOrNull(value: unknown): number | null {
  return typeof value === "number" ? value : null;
}
