/** The client's transport: endpoints, localhost over both loopbacks, keep-alive, the CJS build. */
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, type Server } from "node:http";
import { createRequire } from "node:module";
import { after, before, describe, test } from "node:test";
import ratelimiter, { CheckResult, Client, InvalidRequestError } from "viva-ratelimit-client";

const ANSWER = JSON.stringify({
  allowed: false,
  limit: 1,
  remaining: 0,
  reset_at: "2030-01-01T00:00:00Z",
  reset_after_seconds: 7,
  retry_after_seconds: 7,
  window_seconds: 60,
  policy: "identifier",
});

/** An HTTP server answering every POST with one fixed check result, counting connections. */
async function answering(host: string): Promise<{ server: Server; port: number; connections: () => number }> {
  let connections = 0;
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.setHeader("Content-Type", "application/json");
      res.end(ANSWER);
    });
  });
  server.on("connection", () => connections++);
  server.listen(0, host);
  await once(server, "listening");
  return { server, port: (server.address() as { port: number }).port, connections: () => connections };
}

describe("transport", () => {
  let v6: Awaited<ReturnType<typeof answering>> | undefined;
  let v4: Awaited<ReturnType<typeof answering>>;
  before(async () => {
    v4 = await answering("127.0.0.1");
    try {
      v6 = await answering("::1");
    } catch {
      v6 = undefined; // no IPv6 loopback on this machine
    }
  });
  after(() => {
    v4.server.closeAllConnections();
    v4.server.close();
    v6?.server.closeAllConnections();
    v6?.server.close();
  });

  test("localhost reaches a sidecar that listens on ::1 only", async (t) => {
    if (v6 === undefined) return t.skip("no IPv6 loopback here");
    const client = new Client({ endpoint: `localhost:${v6.port}`, retry: { attempts: 1 }, timeoutMs: 5000 });
    for (let i = 0; i < 2; i++) {
      const result = await client.check({ namespace: "n", identifier: "i" });
      assert.equal(result.error, null);
      assert.deepEqual(
        [result.allowed, result.retryAfterSeconds, result.resetAt?.toISOString()],
        [false, 7, "2030-01-01T00:00:00.000Z"],
      );
    }
  });

  test("connections are kept alive and reused", async () => {
    const client = new Client(`http://127.0.0.1:${v4.port}`);
    const before = v4.connections();
    for (let i = 0; i < 20; i++) await client.peek({ namespace: "n", identifier: "i" });
    // fetch may open a spare connection while one finishes; never one per call
    assert.ok(v4.connections() - before <= 2, `${v4.connections() - before} connections for 20 calls`);
  });

  test("the CommonJS build works as the ESM one", async () => {
    const cjs = createRequire(import.meta.url)("viva-ratelimit-client") as typeof import("viva-ratelimit-client");
    assert.equal(typeof cjs.middleware, "function");
    assert.notEqual(cjs.Client, Client); // another build, loaded on its own
    const result = await new cjs.Client(`127.0.0.1:${v4.port}`).check({ namespace: "n", identifier: "i" });
    assert.equal(result.limit, 1);
    assert.equal(ratelimiter.middleware, (await import("viva-ratelimit-client")).middleware);
  });
});

describe("mistakes", () => {
  test("bad options are refused when the client is made, naming them", () => {
    for (const [options, message] of [
      [{ endpoint: "ftp://host:21" }, /scheme ftp/],
      [{ endpoint: "" }, /endpoint is empty/],
      [{ endpoint: "http://h:1/?q" }, /query/],
      [{ timeoutMs: 0 }, /timeoutMs/],
      [{ retry: { attempts: 0 } }, /retry.attempts/],
      [{ failureMode: "sometimes" }, /failureMode/],
    ] as const) {
      assert.throws(() => new Client(options as ConstructorParameters<typeof Client>[0]), message);
    }
  });

  test("requests that cannot be right fail before any call, naming the field", async () => {
    const client = new Client("127.0.0.1:1");
    const cases = [
      [{ namespace: "n" }, "identifier"],
      [{ namespace: "n", identifier: "i", descriptors: [{ k: "v" }] }, "descriptors"],
      [{ namespace: "n", identifier: "i", hits: 1.5 }, "hits"],
    ] as const;
    for (const [request, field] of cases) {
      await assert.rejects(
        client.check(request),
        (e: unknown) => e instanceof InvalidRequestError && e.field === field,
      );
    }
  });
});

test("headers escape what a Structured Field String cannot hold", () => {
  const result = new CheckResult({
    allowed: true,
    limit: 5,
    remaining: 4,
    windowSeconds: 3600,
    resetAfterSeconds: 9,
    policy: 'we"ird\\näme',
  });
  assert.deepEqual(result.headers(["ietf"]), [
    ["RateLimit-Policy", '"we\\"ird\\\\n_me";q=5;w=3600'],
    ["RateLimit", '"we\\"ird\\\\n_me";r=4;t=9'],
  ]);
  assert.deepEqual(new CheckResult({ allowed: true }).headers(), []);
});
