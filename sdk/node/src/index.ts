/**
 * Client and Express/Connect middleware of the Viva rate-limit sidecar.
 *
 *     import ratelimiter from 'viva-ratelimit-client'   // or require('viva-ratelimit-client')
 *     app.use(ratelimiter.middleware({ endpoint: 'localhost:8080',
 *       identifier: (req) => req.user?.id || req.ip, namespace: 'api_requests' }))
 *
 *     const client = new ratelimiter.Client({ endpoint: 'localhost:8080' })
 *     if (!(await client.allow('user_123', 'api_requests'))) { … }
 *
 *     // full mode: who is this API key, and may they?
 *     const keys = new ratelimiter.Client({ endpoint: 'localhost:8080', rootKey: process.env.VIVA_ROOT_KEY })
 *     const verdict = await keys.verifyKey(apiKey, { features: ['exports'] })   // verdict.code
 *
 *     // a concurrency limit: hold one of the user's slots while the socket is open
 *     await client.withLease('user_123', 'ws', async (lease) => { … })   // LeaseRefusedError when full
 */
import { Client } from "./client.js";
import {
  InvalidRequestError,
  LeaseRefusedError,
  RateLimitClientError,
  SidecarUnavailableError,
  UnauthorizedError,
} from "./errors.js";
import { Lease, LeaseResult, ReleaseResult } from "./lease.js";
import { middleware } from "./middleware.js";
import { CheckResult } from "./result.js";
import { KeyVerification, VerifyCode } from "./verification.js";

export type { CheckRequest, ClientOptions, Descriptor, FailureMode, RetryPolicy, VerifyOptions } from "./client.js";
export type { HeaderFamily } from "./headers.js";
export type { LeaseOptions, LeaseRequest } from "./lease.js";
export type { Middleware, MiddlewareOptions, Next, RequestLike } from "./middleware.js";
export type { VerifiedLimit } from "./verification.js";
export {
  CheckResult,
  Client,
  InvalidRequestError,
  KeyVerification,
  Lease,
  LeaseRefusedError,
  LeaseResult,
  middleware,
  RateLimitClientError,
  ReleaseResult,
  SidecarUnavailableError,
  UnauthorizedError,
  VerifyCode,
};

const ratelimiter = {
  CheckResult,
  Client,
  InvalidRequestError,
  KeyVerification,
  Lease,
  LeaseRefusedError,
  LeaseResult,
  middleware,
  RateLimitClientError,
  ReleaseResult,
  SidecarUnavailableError,
  UnauthorizedError,
  VerifyCode,
};
export default ratelimiter;
