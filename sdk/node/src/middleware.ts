import type { IncomingMessage, ServerResponse } from "node:http";
import { Client, type ClientOptions } from "./client.js";
import { HEADER_FAMILIES, type HeaderFamily } from "./headers.js";
import type { CheckResult } from "./result.js";

/** What the middleware reads of a request: Node's, plus what Express and auth layers add. */
export interface RequestLike extends IncomingMessage {
  ip?: string | undefined;
  user?: { id?: string | number | undefined } | undefined;
}

type Identifier = string | number | null | undefined;
// Method signatures (not function-typed properties): their parameters are checked
// bivariantly, so an identifier annotated `(req: express.Request) => …` is accepted too.
type NamespaceOf = { of(req: RequestLike): string }["of"];

export interface MiddlewareOptions extends ClientOptions {
  /** The namespace, or a function of the request choosing it. */
  namespace: string | NamespaceOf;
  /**
   * The identifier of a request (sync or async): a user id, an API key; default the client's
   * address (`req.ip`, else the socket's). Nothing (null, undefined, "") lets the request through
   * unchecked (health checks, internal calls).
   */
  identifier?(req: RequestLike): Identifier | Promise<Identifier>;
  /** Hits charged per request (default 1). */
  hits?: number;
  /** A client to share; else one is made from the client options (endpoint, timeoutMs, …). */
  client?: Client;
  /** The rate-limit header families added to responses (default all three). */
  rateLimitHeaders?: readonly HeaderFamily[];
  /** Called with what went wrong when the sidecar could not decide (for logging). */
  onError?(error: Error, req: RequestLike): void;
}

export type Next = (error?: unknown) => void;
export type Middleware = (req: IncomingMessage, res: ServerResponse, next: Next) => void;

/**
 * Express/Connect middleware: every request is checked before the app sees it. Refused requests
 * get 429 with Retry-After, the rate-limit headers and `{"error": "rate limit exceeded",
 * "retry_after_seconds": N}`; allowed ones go on with the headers set on their response. When the
 * sidecar cannot decide, failure mode "open" lets them through, "closed" answers 503.
 *
 *     app.use(ratelimiter.middleware({ endpoint: 'localhost:8080',
 *       identifier: (req) => req.user?.id || req.ip, namespace: 'api_requests' }))
 */
export function middleware(options: MiddlewareOptions): Middleware {
  const client = options.client ?? new Client(options);
  const identify = options.identifier?.bind(options) ?? defaultIdentifier;
  const { namespace } = options;
  const namespaceOf = typeof namespace === "function" ? namespace : () => namespace;
  const hits = options.hits ?? 1;
  const families = options.rateLimitHeaders ?? HEADER_FAMILIES;
  return (incoming, res, next) => {
    const req = incoming as RequestLike;
    const run = async (): Promise<void> => {
      const identifier = await identify(req);
      if (identifier === null || identifier === undefined || identifier === "") {
        next();
        return;
      }
      const result = await client.check({ namespace: namespaceOf(req), identifier: String(identifier), hits });
      if (result.error !== null) options.onError?.(result.error, req);
      respond(result, res, next, families);
    };
    run().catch(next);
  };
}

function respond(result: CheckResult, res: ServerResponse, next: Next, families: readonly HeaderFamily[]): void {
  if (result.error !== null) {
    if (result.allowed) next();
    else sendJSON(res, 503, { error: "rate limiter unavailable" });
    return;
  }
  for (const [name, value] of result.headers(families)) res.setHeader(name, value);
  if (result.allowed) {
    next();
    return;
  }
  sendJSON(res, 429, { error: "rate limit exceeded", retry_after_seconds: result.retryAfterSeconds });
}

function sendJSON(res: ServerResponse, status: number, doc: unknown): void {
  const body = JSON.stringify(doc);
  res.statusCode = status;
  res.setHeader("Content-Type", "application/json");
  res.setHeader("Content-Length", Buffer.byteLength(body));
  res.end(body);
}

function defaultIdentifier(req: RequestLike): string | undefined {
  return req.ip ?? req.socket.remoteAddress;
}
