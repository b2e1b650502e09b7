/**
 * Client.lease and withLease against a real sidecar (the contract's rules: a room has 2 slots):
 * background renewals beyond the time to live, the release when `fn` settles or throws and by
 * `await using`, a lease lost behind its holder's back, and the failure modes. The calls
 * underneath are the contract's (contract.test.ts runs leases.json).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Client, type Lease, LeaseRefusedError, SidecarUnavailableError } from "viva-ratelimit-client";
import * as h from "./harness.js";

const { contract } = h.loadContract();
const bin = h.sidecarBinary(contract);
const skip =
  bin === null
    ? h.missing(`the sidecar executable (${contract.sidecar.executable_env} or .venv/bin/viva-ratelimit)`)
    : false;

describe("leases", { skip }, () => {
  const processes = new h.Processes();
  let client: Client;
  let rooms = 0;
  before(async () => {
    const sidecar = await h.startSidecar(contract, bin as string, "memory", 0, processes, h.newRootKey());
    client = new Client({ endpoint: `127.0.0.1:${sidecar.httpPort}`, timeoutMs: 10_000 });
  });
  after(() => processes.stopAll());

  /** A room nobody else uses, and how many of its 2 slots are held (one taken and given back). */
  const newRoom = () => {
    const descriptors = [[["room", `node-${process.pid}-${rooms++}`]] as [string, string][]];
    const active = async (): Promise<number> => {
      const probe = await client.acquireLease({ namespace: "contract_leases", descriptors });
      if (!probe.allowed) return probe.active ?? -1;
      await client.releaseLease(probe.leaseId as string);
      return (probe.active ?? 0) - 1;
    };
    return { options: { descriptors }, active };
  };

  test("renewed in the background beyond its time to live", async () => {
    // ttl 2 s, renewed every 100 ms: lost only if the process stalled for 1.9 s
    const room = newRoom();
    const lease = await client.lease(null, "contract_leases", {
      ...room.options,
      ttlMs: 2000,
      renewEveryMs: 100,
    });
    assert.equal(lease.held, true);
    assert.equal(lease.result.ttlSeconds, 2);
    const first = lease.result.expiresAt?.getTime() ?? 0;
    await h.sleep(3000);
    assert.equal(lease.held, true);
    assert.equal(lease.lost, false);
    assert.ok((lease.result.expiresAt?.getTime() ?? 0) > first + 1000, "the renewals moved its expiry");
    assert.equal(await room.active(), 1);
    const released = await lease.release();
    assert.deepEqual([released.released, released.active, lease.held], [true, 0, false]);
    assert.equal((await lease.release()).released, false, "a second release sends nothing");
  });

  test("withLease releases when fn returns or throws; await using releases too", async () => {
    const room = newRoom();
    assert.equal(await client.withLease(null, "contract_leases", () => room.active(), room.options), 1);
    assert.equal(await room.active(), 0);
    await assert.rejects(
      client.withLease(
        null,
        "contract_leases",
        async () => {
          assert.equal(await room.active(), 1);
          throw new Error("boom");
        },
        room.options,
      ),
      /boom/,
    );
    assert.equal(await room.active(), 0);
    {
      await using lease = await client.lease(null, "contract_leases", room.options);
      assert.equal(lease.held, true);
      assert.equal(await room.active(), 1);
    }
    assert.equal(await room.active(), 0);
  });

  test("refused when every slot is held", async () => {
    const room = newRoom();
    const held = [
      await client.lease(null, "contract_leases", room.options),
      await client.lease(null, "contract_leases", room.options),
    ];
    let ran = false;
    const refused = await client
      .withLease(
        null,
        "contract_leases",
        () => {
          ran = true;
        },
        room.options,
      )
      .then(
        () => null,
        (error: unknown) => error,
      );
    assert.equal(ran, false);
    assert.ok(refused instanceof LeaseRefusedError);
    assert.deepEqual([refused.result.active, refused.result.limit], [2, 2]);
    assert.match(refused.message, /^lease refused: 2 of 2 held for "per_room"; a slot frees within \d+ s$/);
    for (const lease of held) await lease.release();
  });

  test("a lease released behind its back is lost", async () => {
    const room = newRoom();
    const lost: Lease[] = [];
    const lease = await client.lease(null, "contract_leases", {
      ...room.options,
      renewEveryMs: 50,
      onLost: (l) => lost.push(l),
    });
    assert.equal((await client.releaseLease(lease.id as string)).released, true);
    const deadline = Date.now() + 10_000;
    while (!lease.lost && Date.now() < deadline) await h.sleep(20);
    assert.deepEqual([lease.lost, lease.held, lost.length], [true, false, 1]);
    assert.equal((await lease.release()).released, false, "a lost lease is not released again");
  });

  test("failure modes without the sidecar", async () => {
    const closed = `127.0.0.1:${await h.freePort()}`;
    const once = { attempts: 1 };
    const open = await new Client({ endpoint: closed, retry: once }).lease("u", "contract_leases");
    assert.equal(open.held, false);
    assert.ok(open.result.error instanceof SidecarUnavailableError);
    assert.equal((await open.release()).released, false);
    const failClosed = new Client({ endpoint: closed, retry: once, failureMode: "closed" });
    await assert.rejects(
      failClosed.withLease("u", "contract_leases", () => assert.fail("ran without a lease")),
      (error: unknown) => error instanceof LeaseRefusedError && error.result.error !== null,
    );
  });
});
