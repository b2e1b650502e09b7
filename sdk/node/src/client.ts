import { parseEndpoint } from "./endpoint.js";
import { InvalidRequestError, SidecarUnavailableError } from "./errors.js";
import { CheckResult } from "./result.js";

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
  readonly #bases: string[];
  readonly #headers: Record<string, string>;
  #preferred = 0;

  constructor(options: ClientOptions | string = {}) {
    const o = typeof options === "string" ? { endpoint: options } : options;
    this.endpoint = o.endpoint ?? "localhost:8080";
    this.#bases = parseEndpoint(this.endpoint);
    this.timeoutMs = positive("timeoutMs", o.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    this.retry = retryPolicy(o.retry);
    this.failureMode = failureMode(o.failureMode ?? "open");
    this.#headers = { ...o.headers, "content-type": "application/json", accept: "application/json" };
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

  async #post(path: string, body: Record<string, unknown>): Promise<CheckResult> {
    const payload = JSON.stringify(body);
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#attempt(path, payload);
      } catch (error) {
        if (error instanceof InvalidRequestError) throw error;
        if (!isConnectError(error) || attempt >= this.retry.attempts) {
          return this.#failed(new SidecarUnavailableError(describe(error), attempt, error));
        }
      }
      await sleep(this.#delay(attempt));
    }
  }

  /** One POST, trying each base address in turn while connections are refused. */
  async #attempt(path: string, payload: string): Promise<CheckResult> {
    const signal = AbortSignal.timeout(this.timeoutMs);
    let lastError: unknown;
    for (let i = 0; i < this.#bases.length; i++) {
      const n = (this.#preferred + i) % this.#bases.length;
      try {
        const response = await fetch(this.#bases[n] + path, {
          method: "POST",
          headers: this.#headers,
          body: payload,
          signal,
        });
        this.#preferred = n;
        return await interpret(response);
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

async function interpret(response: Response): Promise<CheckResult> {
  const text = await response.text();
  const doc = parseJSON(text);
  if (response.status === 200) {
    try {
      return CheckResult.fromJSON(doc);
    } catch (error) {
      throw new Error(`${(error as Error).message}: ${text.slice(0, 200)}`);
    }
  }
  const message = typeof doc?.error === "string" ? doc.error : text.slice(0, 200);
  if (response.status === 400 || response.status === 413) {
    const field = typeof doc?.field === "string" ? doc.field : null;
    throw new InvalidRequestError(message || `HTTP ${response.status} from the sidecar`, field, response.status);
  }
  throw new Error(`HTTP ${response.status} from the sidecar: ${message}`);
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

function failureMode(mode: string): FailureMode {
  if (mode !== "open" && mode !== "closed") {
    throw new TypeError(`failureMode is ${JSON.stringify(mode)}; expected "open" or "closed"`);
  }
  return mode;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
