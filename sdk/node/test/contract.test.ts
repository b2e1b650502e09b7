/**
 * Every vector of sdk/contract against real sidecar processes (memory and Redis stores), the
 * middleware ones through a real Express app over HTTP.
 */

import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, type Server } from "node:http";
import { after, describe, test } from "node:test";
import { inspect } from "node:util";
import express from "express";
import ratelimiter, {
  type CheckRequest,
  type CheckResult,
  Client,
  InvalidRequestError,
  type KeyVerification,
  type LeaseResult,
  ReleaseResult,
  UnauthorizedError,
  type VerifyOptions,
} from "viva-ratelimit-client";
import * as h from "./harness.js";

const { contract, vectors } = h.loadContract();
const rootKey = h.newRootKey();
const bin = h.sidecarBinary(contract);
const skip =
  bin === null
    ? h.missing(`the sidecar executable (${contract.sidecar.executable_env} or .venv/bin/viva-ratelimit)`)
    : h.redisBinary() === null
      ? h.missing("redis-server (VIVA_REDIS_SERVER or the PATH)")
      : false;

interface Target {
  port: number;
  sidecar?: h.Sidecar;
  silent?: h.SilentServer;
}

/** Where each vector's {port} points; sidecars and the silent server start on first use. */
class Targets {
  readonly processes = new h.Processes();
  readonly #sidecars = new Map<string, Promise<h.Sidecar>>();
  #redis: Promise<number> | undefined;
  #silent: Promise<h.SilentServer> | undefined;

  async get(place: string): Promise<Target> {
    if (place === "closed_port") return { port: await h.freePort() };
    if (place === "silent_server") {
      this.#silent ??= new h.SilentServer().start();
      const silent = await this.#silent;
      return { port: silent.port, silent };
    }
    let sidecar = this.#sidecars.get(place);
    if (sidecar === undefined) {
      sidecar = this.#startSidecar(place);
      this.#sidecars.set(place, sidecar);
    }
    const s = await sidecar;
    return { port: s.httpPort, sidecar: s };
  }

  async #startSidecar(place: string): Promise<h.Sidecar> {
    let redisPort = 0;
    if (contract.sidecar.profiles[place]?.needs_redis) {
      this.#redis ??= h.startRedis(this.processes);
      redisPort = await this.#redis;
    }
    return h.startSidecar(contract, bin as string, place, redisPort, this.processes, rootKey);
  }

  async stop(): Promise<void> {
    await (await this.#silent)?.stop();
    await this.processes.stopAll();
  }
}

describe("sdk/contract", { skip }, () => {
  const targets = new Targets();
  after(() => targets.stop());
  let runs = 0;

  test("the README's middleware example, verbatim, in Express and in a bare Connect-style server", async () => {
    const { port } = await targets.get("memory");
    const app = express();
    app.use((req, _res, next) => {
      (req as express.Request & { user?: { id: string } }).user = { id: `readme-${process.pid}` };
      next();
    });
    // biome-ignore format: the README's line as written
    app.use(ratelimiter.middleware({ endpoint: `localhost:${port}`, identifier: (req) => req.user?.id || req.ip, namespace: 'api_requests' }))
    app.use((_req, res) => {
      res.send("ok");
    });
    assert.deepEqual(await statuses(app.listen(0, "127.0.0.1"), 4), [200, 200, 200, 429]);

    // Connect-style: (req, res, next) on Node's own server; no user, so the client address
    const limit = ratelimiter.middleware({ endpoint: `http://127.0.0.1:${port}`, namespace: "api_requests" });
    const bare = createServer((req, res) => limit(req, res, () => res.end("ok")));
    assert.deepEqual(await statuses(bare.listen(0, "127.0.0.1"), 4), [200, 200, 200, 429]);
  });

  for (const vector of vectors) {
    const places = contract.targets[vector.target]?.length
      ? (contract.targets[vector.target] as string[])
      : [vector.target];
    for (const place of places) {
      const runner = vector.steps[0]?.request ? "express" : "client";
      test(`${vector.name} [${place}, ${runner}]`, async () => {
        const target = await targets.get(place);
        await h.waitForWindow(vector);
        const run = `${process.pid.toString(16)}-${(runs++).toString(16)}`;
        const saved = vector.setup && target.sidecar ? await target.sidecar.setup(h.substitute(vector.setup, run)) : {};
        const problems: string[] = [];
        for (const [i, raw] of vector.steps.entries()) {
          const step = h.fillSaved(h.substitute(raw, run), saved);
          if (step.wait_ms !== undefined) await h.sleep(step.wait_ms); // outside the step's time
          const { problems: found, actual } = await runStep(vector, step, target);
          for (const p of found) problems.push(`step ${i}: ${p}`);
          if (step.save !== undefined) save(step.save, actual.lease, saved);
        }
        if (problems.length > 0) throw new Error(`${vector.about}\n${problems.join("\n")}`);
      });
    }
  }
});

async function runStep(
  vector: h.Vector,
  step: h.Step,
  target: Target,
): Promise<{ problems: string[]; actual: Record<string, unknown> }> {
  const settings = { ...contract.client_defaults, ...vector.client, ...step.client };
  const client = new Client({
    endpoint: String(settings.endpoint).replace("{port}", String(target.port)),
    timeoutMs: Number(settings.timeout_ms),
    retry: {
      attempts: Number(settings.attempts),
      backoffMs: Number(settings.backoff_ms),
      maxBackoffMs: Number(settings.max_backoff_ms),
    },
    failureMode: settings.failure_mode === "closed" ? "closed" : "open",
    // null: the client has none; verify_failure_mode absent: the client's default
    ...(typeof settings.root_key === "string" ? { rootKey: settings.root_key.replace("{root_key}", rootKey) } : {}),
    ...(settings.verify_failure_mode === undefined
      ? {}
      : { verifyFailureMode: settings.verify_failure_mode === "closed" ? "closed" : "open" }),
  });
  const before = await counters(target);
  const started = Date.now();
  let actual: Record<string, unknown>;
  if (step.request) {
    const mw = { ...contract.middleware_defaults, ...vector.middleware, ...step.middleware };
    actual = await serve(client, mw, step.request);
  } else if (step.call === "verifyKey") {
    actual = await verify(client, step, started);
  } else if (step.call?.endsWith("_lease")) {
    actual = await leaseCall(client, step, started);
  } else {
    actual = await call(client, step, started);
  }
  const elapsed = Date.now() - started;
  const after = await counters(target);
  const leaks = step.call === "verifyKey" ? secretsShown([step.key ?? "", rootKey], actual.texts as Texts) : [];
  const grew = { sidecar: after.sidecar - before.sidecar, silent: after.silent - before.silent };
  return { problems: [...check(step.expect, actual, elapsed, grew), ...leaks], actual };
}

/** A step's `save`: the string fields of its answer, as `NAME.FIELD` for the later steps. */
function save(name: string, answer: unknown, saved: Record<string, string>): void {
  for (const [field, value] of Object.entries((answer ?? {}) as Record<string, unknown>)) {
    if (typeof value === "string") saved[`${name}.${field}`] = value;
  }
}

/** An acquire_lease, renew_lease or release_lease step in the contract's names. */
async function leaseCall(client: Client, step: h.Step, started: number): Promise<Record<string, unknown>> {
  const ttl = step.ttl_ms === undefined ? {} : { ttlMs: step.ttl_ms };
  let answer: LeaseResult | ReleaseResult;
  try {
    if (step.call === "acquire_lease") {
      answer = await client.acquireLease({
        namespace: step.namespace ?? "",
        ...(step.identifier === undefined ? {} : { identifier: step.identifier }),
        ...(step.descriptors === undefined ? {} : { descriptors: step.descriptors }),
        ...ttl,
      });
    } else if (step.call === "renew_lease") {
      answer = await client.renewLease(step.lease_id ?? "", ttl);
    } else {
      answer = await client.releaseLease(step.lease_id ?? "");
    }
  } catch (error) {
    if (error instanceof InvalidRequestError) return { error: { kind: "invalid_request", field: error.field } };
    return { error: { kind: "unexpected", message: String(error) } };
  }
  const out: Record<string, unknown> =
    answer instanceof ReleaseResult
      ? { released: { released: answer.released, active: answer.active, limit: answer.limit } }
      : { lease: leaseView(answer, started, true) };
  if (answer.error !== null) out.unavailable = { attempts: answer.error.attempts };
  return out;
}

function leaseView(r: LeaseResult, started: number, whole: boolean): Record<string, unknown> {
  const view: Record<string, unknown> = {
    allowed: r.allowed,
    active: r.active,
    limit: r.limit,
    expires_at: secondsFrom(r.expiresAt, started),
    ttl_seconds: r.ttlSeconds,
    retry_after_seconds: r.retryAfterSeconds,
    policy: r.policy,
  };
  if (!whole) return view; // one descriptor's answer has no id of its own
  return { ...view, lease_id: r.leaseId, results: r.results.map((each) => leaseView(each, started, false)) };
}

type Texts = Record<string, string>;

/** A verifyKey step in the contract's names; `texts` must not show a secret. */
async function verify(client: Client, step: h.Step, started: number): Promise<Record<string, unknown>> {
  const options: VerifyOptions = {
    ...(step.cost === undefined ? {} : { cost: step.cost }),
    ...(step.limits === undefined ? {} : { limits: step.limits }),
    ...(step.features === undefined ? {} : { features: step.features }),
    ...(step.client_address === undefined ? {} : { clientAddress: step.client_address }),
  };
  const texts: Texts = { client: inspect(client, { depth: 5 }) };
  let verdict: KeyVerification;
  try {
    verdict = await client.verifyKey(step.key ?? "", options);
  } catch (error) {
    texts.error = inspect(error);
    if (error instanceof InvalidRequestError) return { error: { kind: "invalid_request", field: error.field }, texts };
    if (error instanceof UnauthorizedError) return { error: { kind: "unauthorized" }, texts };
    return { error: { kind: "unexpected", message: String(error) }, texts };
  }
  texts.verdict = inspect(verdict, { depth: 5 });
  const out: Record<string, unknown> = { verification: verificationView(verdict, started), texts };
  if (verdict.error !== null) out.unavailable = { attempts: verdict.error.attempts };
  return out;
}

function verificationView(v: KeyVerification, started: number): Record<string, unknown> {
  return {
    valid: v.valid,
    code: v.code,
    key_id: v.keyId,
    customer_id: v.customerId,
    plan: v.plan,
    features: [...v.features],
    remaining: v.remaining,
    reset_at: secondsFrom(v.resetAt, started),
    limits: v.limits.map((l) => ({
      name: l.name,
      limit: l.limit,
      remaining: l.remaining,
      reset_at: secondsFrom(l.resetAt, started),
      exceeded: l.exceeded,
    })),
  };
}

function secondsFrom(instant: Date | null, started: number): number | null {
  return instant === null ? null : Math.ceil((instant.getTime() - started) / 1000);
}

function secretsShown(secrets: string[], texts: Texts): string[] {
  return Object.entries(texts).flatMap(([place, text]) =>
    secrets.filter((s) => s !== "" && text.includes(s)).map(() => `the ${place} shows a secret: ${text.slice(0, 300)}`),
  );
}

async function counters(target: Target): Promise<{ sidecar: number; silent: number }> {
  return { sidecar: (await target.sidecar?.requests()) ?? 0, silent: target.silent?.requests ?? 0 };
}

function check(
  expect: h.Step["expect"],
  actual: Record<string, unknown>,
  elapsed: number,
  grew: { sidecar: number; silent: number },
): string[] {
  const out: string[] = [];
  for (const key of ["error", "unavailable"]) {
    if (!(key in expect) && actual[key] !== undefined) out.push(`unexpected ${key}: ${JSON.stringify(actual[key])}`);
  }
  for (const [key, want] of Object.entries(expect)) {
    if (key === "min_elapsed_ms" && elapsed < (want as number))
      out.push(`took ${elapsed} ms, expected at least ${String(want)}`);
    else if (key === "max_elapsed_ms" && elapsed > (want as number))
      out.push(`took ${elapsed} ms, expected at most ${String(want)}`);
    else if (key === "sidecar_requests") out.push(...h.match(key, want, grew.sidecar));
    else if (key === "silent_requests") out.push(...h.match(key, want, grew.silent));
    else if (key === "headers") {
      const got = actual.headers as Record<string, string>;
      for (const [name, value] of Object.entries(want as Record<string, h.Settings[string]>)) {
        out.push(...h.match(`headers.${name}`, value, got[name.toLowerCase()]));
      }
    } else if (!key.endsWith("_elapsed_ms")) out.push(...h.match(key, want, actual[key]));
  }
  return out;
}

async function call(client: Client, step: h.Step, started: number): Promise<Record<string, unknown>> {
  if (step.call === "allow") {
    return { return: await client.allow(step.identifier ?? "", step.namespace ?? "", step.hits ?? 1) };
  }
  const request: CheckRequest = { namespace: step.namespace ?? "", hits: step.hits ?? 1 };
  if (step.identifier !== undefined) request.identifier = step.identifier;
  if (step.descriptors !== undefined) request.descriptors = step.descriptors;
  let result: CheckResult;
  try {
    result =
      step.call === "report" ? await client.report({ ...request, hits: step.hits ?? 1 }) : await client.check(request);
  } catch (error) {
    if (error instanceof InvalidRequestError) return { error: { kind: "invalid_request", field: error.field } };
    return { error: { kind: "unexpected", message: String(error) } };
  }
  const headers = Object.fromEntries(result.headers().map(([name, value]) => [name.toLowerCase(), value]));
  const out: Record<string, unknown> = { result: view(result, started), headers };
  if (result.error !== null) out.unavailable = { attempts: result.error.attempts };
  return out;
}

function view(r: CheckResult, started: number): Record<string, unknown> {
  return {
    allowed: r.allowed,
    limit: r.limit,
    remaining: r.remaining,
    reset_at: secondsFrom(r.resetAt, started),
    reset_after_seconds: r.resetAfterSeconds,
    retry_after_seconds: r.retryAfterSeconds,
    window_seconds: r.windowSeconds,
    policy: r.policy,
    results: r.results.map((each) => view(each, started)),
  };
}

/** The step's request, over HTTP, to a real Express app behind the middleware. */
async function serve(
  client: Client,
  mw: h.Settings,
  request: NonNullable<h.Step["request"]>,
): Promise<Record<string, unknown>> {
  const header = String(mw.identifier_header);
  const app = express();
  app.use(
    ratelimiter.middleware({
      client,
      namespace: String(mw.namespace),
      identifier: (req: express.Request) => req.get(header),
      hits: Number(mw.hits),
    }),
  );
  app.use((_req, res) => {
    res.type("text/plain").send("ok");
  });
  const server: Server = app.listen(0, "127.0.0.1");
  await once(server, "listening");
  try {
    const { port } = server.address() as { port: number };
    const response = await fetch(`http://127.0.0.1:${port}${request.path ?? "/hello"}`, {
      method: request.method ?? "GET",
      headers: { ...request.headers, connection: "close" },
    });
    const body = await response.text();
    const headers = Object.fromEntries([...response.headers].map(([name, value]) => [name.toLowerCase(), value]));
    let json: unknown;
    try {
      json = JSON.parse(body);
    } catch {
      json = undefined;
    }
    return { status: response.status, body, json, headers };
  } finally {
    server.closeAllConnections();
    await new Promise<void>((ok) => server.close(() => ok()));
  }
}

/** The statuses of `count` GETs to a server that is starting to listen; closes it after. */
async function statuses(server: Server, count: number): Promise<number[]> {
  await once(server, "listening");
  const { port } = server.address() as { port: number };
  const out: number[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const response = await fetch(`http://127.0.0.1:${port}/`, { headers: { connection: "close" } });
      await response.arrayBuffer();
      out.push(response.status);
    }
  } finally {
    server.closeAllConnections();
    server.close();
  }
  return out;
}
