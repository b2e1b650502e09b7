/**
 * Client.verifyKey beyond the contract (contract.test.ts runs verify.json against real full-mode
 * sidecars): what other servers on the sidecar's port answer, the root key and the failure mode.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import { after, describe, test } from "node:test";
import { Client, InvalidRequestError, UnauthorizedError, VerifyCode } from "viva-ratelimit-client";

const KEY = "viva_AcXgQx9sbHq9c2jnvM1WkN78NHQ6";
const ROOT = "vroot_test_0123456789abcdef0123456789abcdef";

interface Seen {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A server answering every call with `status` and `body`, recording the requests. */
async function answering(status: number, body: string): Promise<{ url: string; seen: Seen[]; server: Server }> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    let text = "";
    req.on("data", (chunk: Buffer) => {
      text += chunk.toString();
    });
    req.on("end", () => {
      seen.push({ path: req.url ?? "", headers: req.headers, body: text });
      res.writeHead(status, { "content-type": "application/json" });
      res.end(body);
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, seen, server };
}

describe("verifyKey", () => {
  const servers: Server[] = [];
  const serve = async (status: number, body: string) => {
    const s = await answering(status, body);
    servers.push(s.server);
    return s;
  };
  after(() => {
    for (const s of servers) {
      s.closeAllConnections();
      s.close();
    }
  });

  test("sends the root key with verifications only, and types the verdict", async () => {
    const { url, seen } = await serve(
      200,
      JSON.stringify({ valid: false, code: "REVOKED", key_id: "key_1", customer_id: "c", plan: "pro", limits: [] }),
    );
    const client = new Client({ endpoint: url, rootKey: ROOT });
    const verdict = await client.verifyKey(KEY, { cost: 0, features: ["exports"] });
    assert.deepEqual([verdict.valid, verdict.code, verdict.keyId], [false, VerifyCode.REVOKED, "key_1"]);
    assert.equal(seen[0]?.path, "/v1/keys/verify");
    assert.equal(seen[0]?.headers.authorization, `Bearer ${ROOT}`);
    assert.deepEqual(JSON.parse(seen[0]?.body ?? ""), { key: KEY, cost: 0, features: ["exports"] });
    await client.check({ namespace: "n", identifier: "u" });
    assert.equal(seen[1]?.headers.authorization, undefined);
  });

  test("sends the client address as given", async () => {
    const printable = Array.from({ length: 0x7e - 0x20 }, (_, i) => String.fromCharCode(0x21 + i)).join("");
    const longest = (printable + "z".repeat(128)).slice(0, 128);
    for (const address of ["203.0.113.9", "[2001:db8::1]:443", longest]) {
      const { url, seen } = await serve(200, JSON.stringify({ valid: false, code: "NOT_FOUND" }));
      await new Client({ endpoint: url, rootKey: ROOT }).verifyKey(KEY, { clientAddress: address });
      assert.deepEqual(JSON.parse(seen[0]?.body ?? ""), { key: KEY, cost: 1, client_address: address });
    }
  });

  test("fails closed by default, and never quotes a body the sidecar did not write", async () => {
    const { url } = await serve(502, `upstream said ${KEY}`);
    const closed = await new Client({ endpoint: url, rootKey: ROOT }).verifyKey(KEY);
    assert.deepEqual([closed.valid, closed.code], [false, null]);
    assert.match(String(closed.error?.message), /HTTP 502 from the sidecar$/);
    const open = await new Client({ endpoint: url, rootKey: ROOT, verifyFailureMode: "open" }).verifyKey(KEY);
    assert.deepEqual([open.valid, open.code, open.error?.attempts], [true, null, 1]);
  });

  test("a refused or missing root key throws, even failing open", async () => {
    for (const status of [401, 403]) {
      const { url } = await serve(status, JSON.stringify({ error: "the root key is not valid", field: null }));
      const client = new Client({ endpoint: url, rootKey: ROOT, verifyFailureMode: "open" });
      await assert.rejects(
        client.verifyKey(KEY),
        (e: unknown) => e instanceof UnauthorizedError && e.status === status,
      );
    }
    const none = new Client({ endpoint: "127.0.0.1:1", verifyFailureMode: "open" });
    await assert.rejects(none.verifyKey(KEY), (e: unknown) => e instanceof UnauthorizedError && e.status === null);
  });

  test("mistakes name the field before sending, never the key", async () => {
    const client = new Client({ endpoint: "127.0.0.1:1", rootKey: ROOT });
    for (const [key, options, field] of [
      ["", {}, "key"],
      [KEY, { cost: -1 }, "cost"],
      [KEY, { cost: 0.5 }, "cost"],
      [KEY, { limits: "per_hour" }, "limits"],
      [KEY, { features: [1] }, "features"],
      [KEY, { clientAddress: "" }, "client_address"],
      [KEY, { clientAddress: "a b" }, "client_address"],
      [KEY, { clientAddress: "z".repeat(129) }, "client_address"],
      [KEY, { clientAddress: "caf\u00e9" }, "client_address"],
      [KEY, { clientAddress: "tab\t" }, "client_address"],
      [KEY, { clientAddress: "del\x7f" }, "client_address"],
      [KEY, { clientAddress: 42 }, "client_address"],
    ] as const) {
      await assert.rejects(
        client.verifyKey(key, options as Parameters<Client["verifyKey"]>[1]),
        (e: unknown) => e instanceof InvalidRequestError && e.field === field && !e.message.includes(KEY),
      );
    }
    assert.throws(() => new Client({ rootKey: " " }), /rootKey/);
    assert.throws(() => new Client({ verifyFailureMode: "sometimes" as "open" }), /verifyFailureMode/);
    assert.equal(new Client().verifyFailureMode, "closed");
  });
});
