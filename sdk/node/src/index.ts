/**
 * Client and Express/Connect middleware of the Viva rate-limit sidecar.
 *
 *     import ratelimiter from 'viva-ratelimit-client'   // or require('viva-ratelimit-client')
 *     app.use(ratelimiter.middleware({ endpoint: 'localhost:8080',
 *       identifier: (req) => req.user?.id || req.ip, namespace: 'api_requests' }))
 *
 *     const client = new ratelimiter.Client({ endpoint: 'localhost:8080' })
 *     if (!(await client.allow('user_123', 'api_requests'))) { … }
 */
import { Client } from "./client.js";
import { InvalidRequestError, RateLimitClientError, SidecarUnavailableError } from "./errors.js";
import { middleware } from "./middleware.js";
import { CheckResult } from "./result.js";

export type { CheckRequest, ClientOptions, Descriptor, FailureMode, RetryPolicy } from "./client.js";
export type { HeaderFamily } from "./headers.js";
export type { Middleware, MiddlewareOptions, Next, RequestLike } from "./middleware.js";
export { CheckResult, Client, InvalidRequestError, middleware, RateLimitClientError, SidecarUnavailableError };

const ratelimiter = {
  CheckResult,
  Client,
  InvalidRequestError,
  middleware,
  RateLimitClientError,
  SidecarUnavailableError,
};
export default ratelimiter;
