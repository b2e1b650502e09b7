import { parseEndpoint } from "./endpoint.js";
import { InvalidRequestError, SidecarUnavailableError, UnauthorizedError } from "./errors.js";
import {
  Lease,
  type LeaseOptions,
  type LeaseRequest,
  LeaseResult,
  leaseBody,
  leasePath,
  ReleaseResult,
  ttlSeconds,
} from "./lease.js";
import { CheckResult } from "./result.js";
import { KeyVerification } from "./verification.js";

/** What the client answers when the sidecar cannot decide: "open" allows, "closed" refuses. */
export type FailureMode = "open" | "closed";

/**
 * Retries of a call that could not reach the sidecar. `attempts` counts every try (1: no
 * retry); the delay before retry n is drawn uniformly from [0, min(maxBackoffMs,
 * backoffMs·2ⁿ⁻¹)] (full jitter).
 */
export interface RetryPolicy {
  attempts?: number;
  backoffMs?: number;
  maxBackoffMs?: number;
}

export interface ClientOptions {
  /** "host:port" or a URL; default "localhost:8080". */
  endpoint?: string;
  /** Bound of one attempt, in milliseconds (default 500). */
  timeoutMs?: number;
  /** Default: 3 attempts, 50 ms backoff, 1 s at most. */
  retry?: RetryPolicy;
  /** Default "open". */
  failureMode?: FailureMode;
  /** Extra headers sent with every call (for a proxy in front of the sidecar). */
  headers?: Record<string, string>;
  /** Full mode: the root key (scope keys:verify) that verifyKey sends; nothing else needs it. */
  rootKey?: string;
  /** verifyKey's answer when the sidecar cannot answer; default "closed" (not valid). */
  verifyFailureMode?: FailureMode;
}

/** What verifyKey may add to the key. */
export interface VerifyOptions {
  /** Charged to every limit checked (default 1; 0 checks without charging). */
  cost?: number;
  /** Check only the key's limits of these names, in this order (default: all). */
  limits?: readonly string[];
  /** FORBIDDEN, charging nothing, unless the key's plan has them all. */
  features?: readonly string[];
  /**
   * Who presented the key: its address or a stable id (1 to 128 printable ASCII characters,
   * no spaces), e.g. Express's `req.ip`. The sidecar counts failed verifications per root key
   * and client address, and past its budget answers RATE_LIMITED without a lookup: with it,
   * one client guessing keys is refused alone; without it, every client of the application
   * shares the root key's budget.
   */
  clientAddress?: string;
}

/** One descriptor's entries in order: an object, or [key, value] pairs. */
export type Descriptor = Readonly<Record<string, string>> | ReadonlyArray<readonly [string, string]>;

/** What a check asks about: `identifier` in `namespace`, or several `descriptors` at once. */
export interface CheckRequest {
  namespace: string;
  identifier?: string;
  descriptors?: readonly Descriptor[];
  /** Hits to charge (default 1); 0 peeks without charging. */
  hits?: number;
}

export const DEFAULT_TIMEOUT_MS = 500;
const VERIFY_PATH = "/v1/keys/verify";
const LEASES_PATH = "/v1/leases";
const DEFAULT_RETRY: Required<RetryPolicy> = { attempts: 3, backoffMs: 50, maxBackoffMs: 1000 };
// Failures of the connect phase: the sidecar never saw the request, so a retry cannot charge
// the hits twice. A timeout waiting for the answer, a reset and any answer are not retried.
const CONNECT_ERRORS = new Set([
  "ECONNREFUSED",
  "EADDRNOTAVAIL",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAFNOSUPPORT",
  "UND_ERR_CONNECT_TIMEOUT",
]);

/**
 * Client of the sidecar's REST API over Node's fetch, which keeps connections alive in its
 * pool. Make one per process and reuse it.
 */
export class Client {
  readonly endpoint: string;
  readonly timeoutMs: number;
  readonly retry: Required<RetryPolicy>;
  readonly failureMode: FailureMode;
  readonly verifyFailureMode: FailureMode;
  readonly #bases: string[];
  readonly #headers: Record<string, string>;
  readonly #rootKey: string | null; // private: never shown by util.inspect or JSON.stringify
  #preferred = 0;

  constructor(options: ClientOptions | string = {}) {
    const o = typeof options === "string" ? { endpoint: options } : options;
    this.endpoint = o.endpoint ?? "localhost:8080";
    this.#bases = parseEndpoint(this.endpoint);
    this.timeoutMs = positive("timeoutMs", o.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    this.retry = retryPolicy(o.retry);
    this.failureMode = failureMode("failureMode", o.failureMode ?? "open");
    this.verifyFailureMode = failureMode("verifyFailureMode", o.verifyFailureMode ?? "closed");
    this.#headers = { ...o.headers, "content-type": "application/json", accept: "application/json" };
    if (o.rootKey !== undefined && (typeof o.rootKey !== "string" || o.rootKey.trim() === "")) {
      throw new TypeError("rootKey must be a non-empty string");
    }
    this.#rootKey = o.rootKey ?? null;
  }

  /** Charge `hits` (default 1) to `identifier` in `namespace`; true when allowed. */
  async allow(identifier: string, namespace: string, hits = 1): Promise<boolean> {
    return (await this.check({ identifier, namespace, hits })).allowed;
  }

  /**
   * Charge and decide (`hits: 0` peeks). Throws InvalidRequestError for a malformed request;
   * when the sidecar cannot decide, resolves with the failure mode's answer and `error` set.
   */
  async check(request: CheckRequest): Promise<CheckResult> {
    return this.#post("/v1/check", checkBody(request, request.hits ?? 1));
  }

  /** Where the budget stands, without charging. */
  async peek(request: Omit<CheckRequest, "hits">): Promise<CheckResult> {
    return this.#post("/v1/check", checkBody(request, 0));
  }

  /**
   * Charge `hits` known only after the fact (tokens, bytes): always counted, past the limit
   * too, so later checks are refused until the usage is paid back.
   */
  async report(request: CheckRequest & { hits: number }): Promise<CheckResult> {
    return this.#post("/v1/report", checkBody(request, request.hits));
  }

  /**
   * Full mode: authenticate `key` and charge its plan's limits in one call (needs `rootKey`).
   * The verdict is in `code`. Throws InvalidRequestError for a malformed request and
   * UnauthorizedError for a missing or refused root key, whatever the failure mode; when the
   * sidecar cannot answer, resolves with the verify failure mode's answer and `error` set.
   */
  async verifyKey(key: string, options: VerifyOptions = {}): Promise<KeyVerification> {
    const payload = JSON.stringify(verifyBody(key, options));
    if (this.#rootKey === null) {
      throw new UnauthorizedError(
        "verifyKey needs a root key with the scope keys:verify: new Client({ rootKey })",
        null,
      );
    }
    const headers = { ...this.#headers, authorization: `Bearer ${this.#rootKey}` };
    try {
      return verdict(await this.#exchange("POST", VERIFY_PATH, payload, headers));
    } catch (error) {
      if (error instanceof InvalidRequestError || error instanceof UnauthorizedError) throw error;
      const unavailable =
        error instanceof SidecarUnavailableError ? error : new SidecarUnavailableError(describe(error), 1, error);
      return new KeyVerification({ valid: this.verifyFailureMode === "open", error: unavailable });
    }
  }

  // -- leases of a concurrency limit (lease.ts) -----------------------------------------------

  /**
   * Hold a slot of the concurrency limit of `identifier` (null with `options.descriptors`) in
   * `namespace` while `fn` runs: renewed in the background, released when `fn` settles, whatever
   * it did. Throws LeaseRefusedError, without calling `fn`, when every slot is held (or the
   * sidecar is out of reach and the failure mode is "closed"); with "open" `fn` runs holding
   * nothing (`lease.held` false, `lease.result.error` set).
   */
  async withLease<T>(
    identifier: string | null,
    namespace: string,
    fn: (lease: Lease) => T | Promise<T>,
    options: LeaseOptions = {},
  ): Promise<T> {
    const lease = await this.lease(identifier, namespace, options);
    try {
      return await fn(lease);
    } finally {
      await lease.release();
    }
  }

  /**
   * Take a slot and keep it renewed until `release()` (or `await using lease = ...`); throws
   * LeaseRefusedError as withLease does.
   */
  lease(identifier: string | null, namespace: string, options: LeaseOptions = {}): Promise<Lease> {
    return Lease.acquire(this, identifier, namespace, options);
  }

  /** Take a slot (`leaseId`) or learn that none is free (`allowed` false, with `active`). */
  async acquireLease(request: LeaseRequest): Promise<LeaseResult> {
    const payload = JSON.stringify(leaseBody(request, checkBody(request, 1)));
    return this.#leaseCall(LEASES_PATH, payload);
  }

  /** Hold the lease `ttlMs` more (default: as long as at its acquire); `allowed` false once it
   * is gone (expired, released, never issued). */
  async renewLease(leaseId: string, options: { ttlMs?: number } = {}): Promise<LeaseResult> {
    const path = leasePath(leaseId, "/renew");
    const body = options.ttlMs === undefined ? {} : { ttl: ttlSeconds(options.ttlMs) };
    return this.#leaseCall(path, JSON.stringify(body));
  }

  /** Free the lease's slots; `released` false when it was gone already (or, with `error`, when
   * the sidecar could not be asked: it then expires with its time to live). */
  async releaseLease(leaseId: string): Promise<ReleaseResult> {
    const path = leasePath(leaseId);
    try {
      const answer = await this.#exchange("DELETE", path, null, this.#headers);
      return answer.status === 404 ? new ReleaseResult({ released: false }) : ReleaseResult.fromJSON(answered(answer));
    } catch (error) {
      if (error instanceof InvalidRequestError) throw error;
      return new ReleaseResult({ released: false, error: unavailable(error) });
    }
  }

  async #leaseCall(path: string, payload: string): Promise<LeaseResult> {
    try {
      const answer = await this.#exchange("POST", path, payload, this.#headers);
      return answer.status === 404 ? new LeaseResult({ allowed: false }) : LeaseResult.fromJSON(answered(answer));
    } catch (error) {
      if (error instanceof InvalidRequestError) throw error;
      return new LeaseResult({ allowed: this.failureMode === "open", error: unavailable(error) });
    }
  }

  async #post(path: string, body: Record<string, unknown>): Promise<CheckResult> {
    let attempts = 1;
    try {
      const answer = await this.#exchange("POST", path, JSON.stringify(body), this.#headers);
      attempts = answer.attempts;
      return interpret(answer);
    } catch (error) {
      if (error instanceof InvalidRequestError) throw error;
      if (error instanceof SidecarUnavailableError) return this.#failed(error);
      return this.#failed(new SidecarUnavailableError(describe(error), attempts, error));
    }
  }

  /**
   * The sidecar's answer, retrying what never reached it; SidecarUnavailableError when no
   * answer came. `payload` null: no body.
   */
  async #exchange(
    method: string,
    path: string,
    payload: string | null,
    headers: Record<string, string>,
  ): Promise<Answer> {
    for (let attempt = 1; ; attempt++) {
      try {
        return { ...(await this.#attempt(method, path, payload, headers)), attempts: attempt };
      } catch (error) {
        if (!isConnectError(error) || attempt >= this.retry.attempts) {
          throw new SidecarUnavailableError(describe(error), attempt, error);
        }
      }
      await sleep(this.#delay(attempt));
    }
  }

  /** One request, trying each base address in turn while connections are refused. */
  async #attempt(
    method: string,
    path: string,
    payload: string | null,
    headers: Record<string, string>,
  ): Promise<Omit<Answer, "attempts">> {
    const signal = AbortSignal.timeout(this.timeoutMs);
    let lastError: unknown;
    for (let i = 0; i < this.#bases.length; i++) {
      const n = (this.#preferred + i) % this.#bases.length;
      try {
        const response = await fetch(this.#bases[n] + path, { method, headers, body: payload, signal });
        this.#preferred = n;
        return { status: response.status, text: await response.text() };
      } catch (error) {
        if (!isConnectError(error)) throw error;
        lastError = error;
      }
    }
    throw lastError;
  }

  #delay(retry: number): number {
    const ceiling = Math.min(this.retry.maxBackoffMs, this.retry.backoffMs * 2 ** (retry - 1));
    return Math.random() * ceiling;
  }

  #failed(error: SidecarUnavailableError): CheckResult {
    return new CheckResult({ allowed: this.failureMode === "open", error });
  }
}

/** An answer of the sidecar, and the tries it took. */
interface Answer {
  status: number;
  text: string;
  attempts: number;
}

function interpret({ status, text }: Answer): CheckResult {
  const doc = parseJSON(text);
  if (status === 200) {
    try {
      return CheckResult.fromJSON(doc);
    } catch (error) {
      throw new Error(`${(error as Error).message}: ${text.slice(0, 200)}`);
    }
  }
  const message = typeof doc?.error === "string" ? doc.error : text.slice(0, 200);
  if (status === 400 || status === 413) throw invalid(doc, message, status);
  throw new Error(`HTTP ${status} from the sidecar: ${message}`);
}

/** A 200's JSON; InvalidRequestError for a 400 or 413; SidecarUnavailableError otherwise. */
function answered({ status, text, attempts }: Answer): unknown {
  const doc = parseJSON(text);
  if (status === 200 && doc !== null) return doc;
  const message = typeof doc?.error === "string" ? doc.error : text.slice(0, 200);
  if (status === 400 || status === 413) throw invalid(doc, message, status);
  throw new SidecarUnavailableError(`HTTP ${status} from the sidecar: ${message}`, attempts);
}

/** An error of a call as the SidecarUnavailableError the failure mode answers with. */
function unavailable(error: unknown): SidecarUnavailableError {
  return error instanceof SidecarUnavailableError ? error : new SidecarUnavailableError(describe(error), 1, error);
}

function verdict({ status, text, attempts }: Answer): KeyVerification {
  const doc = parseJSON(text);
  if (status === 200) {
    try {
      return KeyVerification.fromJSON(doc);
    } catch (error) {
      throw new SidecarUnavailableError((error as Error).message, attempts);
    }
  }
  // Only the sidecar's own error text, never a body it did not write: something else on its
  // port might echo the request, and the request holds the key.
  const own = typeof doc?.error === "string" ? `: ${doc.error.slice(0, 200)}` : "";
  if (status === 401 || status === 403) throw new UnauthorizedError(`HTTP ${status} from the sidecar${own}`, status);
  if (status === 400 || status === 413) throw invalid(doc, own.slice(2), status);
  throw new SidecarUnavailableError(`HTTP ${status} from the sidecar${own}`, attempts);
}

function invalid(doc: Record<string, unknown> | null, message: string, status: number): InvalidRequestError {
  const field = typeof doc?.field === "string" ? doc.field : null;
  return new InvalidRequestError(message || `HTTP ${status} from the sidecar`, field, status);
}

function parseJSON(text: string): Record<string, unknown> | null {
  try {
    const doc: unknown = JSON.parse(text);
    return typeof doc === "object" && doc !== null ? (doc as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** The JSON body of /v1/check and /v1/report; InvalidRequestError for what cannot be right. */
export function checkBody(request: Omit<CheckRequest, "hits">, hits: number): Record<string, unknown> {
  const { namespace, identifier, descriptors } = request;
  if (typeof namespace !== "string" || namespace === "") {
    throw InvalidRequestError.field("namespace", "must be a non-empty string");
  }
  if (!Number.isInteger(hits) || hits < 0) {
    throw InvalidRequestError.field("hits", `${String(hits)} is not a whole number >= 0`);
  }
  const body: Record<string, unknown> = { namespace, hits };
  if (descriptors !== undefined && descriptors.length > 0) {
    if (identifier !== undefined) {
      throw InvalidRequestError.field("descriptors", "send either an identifier or descriptors, not both");
    }
    body.descriptors = descriptors.map((d) =>
      (Array.isArray(d) ? d : Object.entries(d)).map(([key, value]) => ({ key, value })),
    );
  } else if (typeof identifier !== "string" || identifier === "") {
    throw InvalidRequestError.field("identifier", "must be a non-empty string (or send descriptors)");
  } else {
    body.identifier = identifier;
  }
  return body;
}

/** The JSON body of /v1/keys/verify; InvalidRequestError naming the field, never the key. */
export function verifyBody(key: string, options: VerifyOptions): Record<string, unknown> {
  if (typeof key !== "string" || key === "") throw InvalidRequestError.field("key", "must be a non-empty string");
  const cost = options.cost ?? 1;
  if (!Number.isInteger(cost) || cost < 0) {
    throw InvalidRequestError.field("cost", `${String(cost)} is not a whole number >= 0`);
  }
  const body: Record<string, unknown> = { key, cost };
  for (const field of ["limits", "features"] as const) {
    const names = options[field];
    if (names === undefined) continue;
    if (!Array.isArray(names) || !names.every((n) => typeof n === "string")) {
      throw InvalidRequestError.field(field, "must be a list of names");
    }
    body[field] = names;
  }
  if (options.clientAddress !== undefined) body.client_address = clientAddress(options.clientAddress);
  return body;
}

const MAX_CLIENT_ADDRESS = 128;

/** A client address as the sidecar accepts it; InvalidRequestError naming client_address. */
function clientAddress(address: unknown): string {
  let problem: string;
  if (typeof address !== "string") problem = `is not a string (${typeof address})`;
  else if (address === "") problem = "is empty";
  else if (!/^[\x21-\x7e]+$/.test(address)) problem = "has a space, a control character or a character outside ASCII";
  else if (address.length > MAX_CLIENT_ADDRESS) problem = `has ${address.length} characters`;
  else return address;
  throw InvalidRequestError.field(
    "client_address",
    `${problem}; expected 1 to ${MAX_CLIENT_ADDRESS} printable ASCII characters without spaces`,
  );
}

function isConnectError(error: unknown): boolean {
  const cause = (error as { cause?: unknown } | null)?.cause;
  const codes = [cause, ...((cause as { errors?: unknown[] } | undefined)?.errors ?? [])].map(
    (e) => (e as { code?: unknown } | undefined)?.code,
  );
  return codes.some((code) => typeof code === "string" && CONNECT_ERRORS.has(code));
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  if (error.name === "TimeoutError") return "timed out waiting for the answer";
  const cause = (error as { cause?: unknown }).cause;
  return cause instanceof Error ? `${error.message}: ${cause.message}` : error.message;
}

function positive(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) throw new TypeError(`${name} is ${value}; expected a positive number`);
  return value;
}

function retryPolicy(retry: RetryPolicy = {}): Required<RetryPolicy> {
  const policy = { ...DEFAULT_RETRY, ...retry };
  if (!Number.isInteger(policy.attempts) || policy.attempts < 1) {
    throw new TypeError(`retry.attempts is ${policy.attempts}; expected a whole number >= 1`);
  }
  if (!(policy.backoffMs >= 0 && policy.maxBackoffMs >= 0)) {
    throw new TypeError("retry.backoffMs and retry.maxBackoffMs must be numbers >= 0");
  }
  return policy;
}

function failureMode(name: string, mode: string): FailureMode {
  if (mode !== "open" && mode !== "closed") {
    throw new TypeError(`${name} is ${JSON.stringify(mode)}; expected "open" or "closed"`);
  }
  return mode;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
