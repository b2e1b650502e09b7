/**
 * The Node runner of the SDK contract (sdk/contract/README.md): real sidecar and redis-server
 * processes on free loopback ports, a silent server, the expectations' matchers.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type Settings = Record<string, Json>;

export interface Step {
  call?: "allow" | "check" | "report" | "verifyKey" | "acquire_lease" | "renew_lease" | "release_lease";
  namespace?: string;
  identifier?: string;
  descriptors?: Array<Array<[string, string]>>;
  hits?: number;
  key?: string;
  cost?: number;
  limits?: string[];
  features?: string[];
  client_address?: string;
  lease_id?: string;
  ttl_ms?: number;
  save?: string;
  wait_ms?: number;
  request?: { method?: string; path?: string; headers?: Record<string, string> };
  client?: Settings;
  middleware?: Settings;
  expect: Record<string, Json>;
}

export interface Vector {
  name: string;
  about: string;
  target: string;
  window_s?: number;
  client?: Settings;
  middleware?: Settings;
  setup?: SetupRequest[];
  steps: Step[];
}

/** An admin API call a vector makes before its steps (target full). */
export interface SetupRequest {
  method: string;
  path: string;
  body?: Json;
  save?: string;
}

export interface Contract {
  version: number;
  rules: string;
  plans: string;
  vector_files: string[];
  sidecar: {
    executable_env: string;
    args: string[];
    env: Record<string, string>;
    profiles: Record<string, { needs_redis?: boolean; env: Record<string, string> }>;
    request_counter: { path: string; metric: string; labels: Record<string, string[]> };
  };
  targets: Record<string, string[]>;
  client_defaults: Settings;
  middleware_defaults: Settings;
}

const KNOWN_EXPECT = new Set([
  "return",
  "result",
  "headers",
  "error",
  "unavailable",
  "status",
  "body",
  "json",
  "verification",
  "lease",
  "released",
  "sidecar_requests",
  "silent_requests",
  "min_elapsed_ms",
  "max_elapsed_ms",
]);

/** sdk/contract, found upward from this file (build/test/ after compilation). */
export const CONTRACT_DIR = findUp(dirname(fileURLToPath(import.meta.url)), join("sdk", "contract", "contract.json"));
export const REPO_ROOT = resolve(CONTRACT_DIR, "..", "..");

function findUp(from: string, relative: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, relative))) return dirname(join(dir, relative));
    if (dirname(dir) === dir) throw new Error(`no ${relative} above ${from}`);
  }
}

const VERSION = 4;
const CALLS = ["allow", "check", "report", "verifyKey", "acquire_lease", "renew_lease", "release_lease"];
const STEP_KEYS = new Set([
  "call",
  "namespace",
  "identifier",
  "descriptors",
  "hits",
  "key",
  "cost",
  "limits",
  "features",
  "client_address",
  "lease_id",
  "ttl_ms",
  "save",
  "wait_ms",
  "request",
  "client",
  "middleware",
  "expect",
]);

const VECTOR_KEYS = new Set(["name", "about", "target", "window_s", "client", "middleware", "setup", "steps"]);

export function loadContract(): { contract: Contract; vectors: Vector[] } {
  const contract = JSON.parse(readFileSync(join(CONTRACT_DIR, "contract.json"), "utf8")) as Contract;
  if (contract.version !== VERSION) {
    throw new Error(`contract version ${contract.version}; this runner knows ${VERSION}`);
  }
  const vectors: Vector[] = [];
  for (const file of contract.vector_files) {
    const doc = JSON.parse(readFileSync(join(CONTRACT_DIR, file), "utf8")) as { vectors: Vector[] };
    for (const vector of doc.vectors) {
      for (const key of Object.keys(vector)) {
        if (!VECTOR_KEYS.has(key)) throw new Error(`${file}: ${vector.name}: unknown vector key ${key}`);
      }
      if (!(vector.target in contract.targets))
        throw new Error(`${file}: ${vector.name}: unknown target ${vector.target}`);
      if (vector.setup !== undefined && vector.target !== "full")
        throw new Error(`${file}: ${vector.name}: setup needs the target full`);
      for (const step of vector.steps) {
        for (const key of Object.keys(step.expect)) {
          if (!KNOWN_EXPECT.has(key)) throw new Error(`${file}: ${vector.name}: unknown expectation ${key}`);
        }
        for (const key of Object.keys(step)) {
          if (!STEP_KEYS.has(key)) throw new Error(`${file}: ${vector.name}: unknown step key ${key}`);
        }
        if (step.call !== undefined && !CALLS.includes(step.call)) {
          throw new Error(`${file}: ${vector.name}: unknown call ${step.call}`);
        }
      }
      vectors.push(vector);
    }
  }
  return { contract, vectors };
}

/** A needed program is missing: an error under CI=true, else a reason to skip. */
export function missing(what: string): string {
  if (process.env.CI && process.env.CI !== "false") throw new Error(`${what} is required in CI but was not found`);
  return `${what} not found`;
}

export function sidecarBinary(contract: Contract): string | null {
  const fromEnv = process.env[contract.sidecar.executable_env];
  if (fromEnv) return fromEnv;
  const bin = join(REPO_ROOT, ".venv", "bin", "viva-ratelimit");
  return existsSync(bin) ? bin : null;
}

export function redisBinary(): string | null {
  if (process.env.VIVA_REDIS_SERVER) return process.env.VIVA_REDIS_SERVER;
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir && existsSync(join(dir, "redis-server"))) return join(dir, "redis-server");
  }
  return null;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const { port } = server.address() as { port: number };
  await new Promise<void>((ok) => server.close(() => ok()));
  return port;
}

/** A process the runner started; stop() sends SIGTERM, then SIGKILL after 10 s. */
export class Processes {
  readonly #children: ChildProcess[] = [];
  readonly #dirs: string[] = [];
  #log = "";

  start(bin: string, args: string[], env: NodeJS.ProcessEnv): ChildProcess {
    const child = spawn(bin, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    const keep = (chunk: Buffer): void => {
      this.#log = (this.#log + chunk.toString()).slice(-20000);
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
    this.#children.push(child);
    return child;
  }

  tempDir(): string {
    const dir = mkdtempSync(join(tmpdir(), "viva-contract-"));
    this.#dirs.push(dir);
    return dir;
  }

  get log(): string {
    return this.#log;
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.#children.map(stop));
    for (const dir of this.#dirs) rmSync(dir, { recursive: true, force: true });
  }
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((ok) => {
    const kill = setTimeout(() => child.kill("SIGKILL"), 10_000);
    child.once("exit", () => {
      clearTimeout(kill);
      ok();
    });
    child.kill("SIGTERM");
  });
}

export async function waitPort(port: number, child: ChildProcess, processes: Processes): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`process exited before port ${port} opened:\n${processes.log}`);
    if (await connects(port)) return;
    await sleep(50);
  }
  throw new Error(`port ${port} did not open within 30s:\n${processes.log}`);
}

function connects(port: number): Promise<boolean> {
  return new Promise((ok) => {
    const socket = createConnection({ port, host: "127.0.0.1" });
    socket.once("connect", () => {
      socket.destroy();
      ok(true);
    });
    socket.once("error", () => ok(false));
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((ok) => setTimeout(ok, ms));
}

/** How much of a window a vector with window_s needs left to start in it. */
const WINDOW_MARGIN_MS = 10_000;

/**
 * A vector with window_s makes its requests in one epoch-aligned window of that many seconds
 * (the sidecar's fixed windows): when this one is nearly over, in the next.
 */
export async function waitForWindow(vector: Vector): Promise<void> {
  if (vector.window_s === undefined) return;
  const window = vector.window_s * 1000;
  const left = window - (Date.now() % window);
  if (left < WINDOW_MARGIN_MS) await sleep(left + 50);
}

export async function startRedis(processes: Processes): Promise<number> {
  const bin = redisBinary();
  if (bin === null) throw new Error("redis-server not found");
  const port = await freePort();
  const child = processes.start(
    bin,
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", processes.tempDir()],
    process.env,
  );
  await waitPort(port, child, processes);
  return port;
}

/** The run's root key ({root_key}): the full-mode sidecars register it at start-up. */
export function newRootKey(): string {
  return `vroot_contract_${randomBytes(16).toString("hex")}`;
}

/** A running sidecar of one profile. */
export interface Sidecar {
  profile: string;
  httpPort: number;
  requests(): Promise<number>;
  /** A vector's setup calls, in order; the string fields of the saved answers as NAME.FIELD. */
  setup(requests: SetupRequest[]): Promise<Record<string, string>>;
}

export async function startSidecar(
  contract: Contract,
  bin: string,
  profile: string,
  redisPort: number,
  processes: Processes,
  rootKey: string,
): Promise<Sidecar> {
  const spec = contract.sidecar.profiles[profile];
  if (spec === undefined) throw new Error(`unknown sidecar profile ${profile}`);
  const values: Record<string, string> = {
    "{rules}": join(CONTRACT_DIR, contract.rules),
    "{plans}": join(CONTRACT_DIR, contract.plans),
    "{http_port}": String(await freePort()),
    "{grpc_port}": String(await freePort()),
    "{debug_port}": String(await freePort()),
    "{redis_port}": String(redisPort),
    "{closed_port}": String(await freePort()),
    "{data_dir}": processes.tempDir(),
    "{root_key}": rootKey,
  };
  const fill = (text: string): string => text.replace(/\{[a-z_]+\}/g, (name) => values[name] ?? name);
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const [k, v] of Object.entries({ ...contract.sidecar.env, ...spec.env })) env[k] = fill(v);
  const httpPort = Number(values["{http_port}"]);
  const child = processes.start(bin, contract.sidecar.args.map(fill), env);
  await waitPort(httpPort, child, processes);
  if (profile !== "store_down") await waitHealthy(httpPort, processes);
  const counter = contract.sidecar.request_counter;
  return {
    profile,
    httpPort,
    requests: async () =>
      sumSamples(await (await fetch(`http://127.0.0.1:${httpPort}${counter.path}`)).text(), counter),
    setup: (requests) => setup(httpPort, rootKey, requests),
  };
}

async function setup(port: number, rootKey: string, requests: SetupRequest[]): Promise<Record<string, string>> {
  const saved: Record<string, string> = {};
  for (const raw of requests) {
    const request = fillSaved(raw, saved);
    const response = await fetch(`http://127.0.0.1:${port}${request.path}`, {
      method: request.method,
      headers: { authorization: `Bearer ${rootKey}`, "content-type": "application/json" },
      ...(request.body === undefined ? {} : { body: JSON.stringify(request.body) }),
    });
    const text = await response.text();
    if (response.status < 200 || response.status > 299) {
      throw new Error(`setup ${request.method} ${request.path}: HTTP ${response.status} ${text}`);
    }
    if (request.save === undefined) continue;
    for (const [field, value] of Object.entries(JSON.parse(text) as Record<string, unknown>)) {
      if (typeof value === "string") saved[`${request.save}.${field}`] = value;
    }
  }
  return saved;
}

/** `${NAME.FIELD}` replaced by what the setup (or an earlier step) saved; an error names what
 * nothing saved. */
export function fillSaved<T>(value: T, saved: Record<string, string>): T {
  const text = JSON.stringify(value).replace(/\$\{([a-z_]+)\.([a-z_]+)\}/g, (_, name: string, field: string) => {
    const found = saved[`${name}.${field}`];
    if (found === undefined) throw new Error(`\${${name}.${field}}: no setup call or earlier step saved it`);
    return JSON.stringify(found).slice(1, -1);
  });
  return JSON.parse(text) as T;
}

async function waitHealthy(port: number, processes: Processes): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    try {
      const response = await fetch(`http://127.0.0.1:${port}/healthcheck`);
      await response.arrayBuffer();
      if (response.status === 200) return;
    } catch {
      // not yet
    }
    await sleep(100);
  }
  throw new Error(`sidecar not healthy within 30s:\n${processes.log}`);
}

function sumSamples(text: string, counter: Contract["sidecar"]["request_counter"]): number {
  let total = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${counter.metric}{`)) continue;
    const end = line.lastIndexOf("}");
    const labels = line.slice(0, end);
    const hit = Object.entries(counter.labels).some(([name, values]) =>
      values.some((value) => labels.includes(`${name}="${value}"`)),
    );
    if (hit) total += Number(line.slice(end + 1).trim());
  }
  return total;
}

/**
 * Accepts connections, reads what arrives, never answers, and counts the connections a request
 * arrived on (fetch opens spare connections; those do not count).
 */
export class SilentServer {
  requests = 0;
  port = 0;
  readonly #server: Server;
  readonly #sockets: Socket[] = [];

  constructor() {
    this.#server = createServer((socket) => {
      this.#sockets.push(socket);
      socket.once("data", () => this.requests++);
      socket.on("error", () => undefined);
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((ok) => this.#server.listen(0, "127.0.0.1", ok));
    this.port = (this.#server.address() as { port: number }).port;
    return this;
  }

  async stop(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((ok) => this.#server.close(() => ok()));
  }
}

// -- matching -------------------------------------------------------------------------------

/** One line per mismatch between an expectation and what happened, each with its path. */
export function match(path: string, expect: Json | undefined, actual: unknown): string[] {
  if (isObject(expect) && Object.keys(expect).length === 1) {
    const [key, arg] = Object.entries(expect)[0] as [string, Json];
    if (key === "between") return between(path, arg, actual);
    if (key === "matches") return matches(path, arg, actual);
    if (key === "absent")
      return actual === undefined || actual === null ? [] : [`${path}: expected absent, got ${show(actual)}`];
  }
  if (Array.isArray(expect)) {
    if (!Array.isArray(actual) || actual.length !== expect.length) {
      return [`${path}: expected ${expect.length} items, got ${show(actual)}`];
    }
    return expect.flatMap((e, i) => match(`${path}[${i}]`, e, actual[i]));
  }
  if (isObject(expect)) {
    if (!isObject(actual)) return [`${path}: expected an object, got ${show(actual)}`];
    return Object.keys(expect)
      .sort()
      .flatMap((key) => match(`${path}.${key}`, expect[key], (actual as Record<string, unknown>)[key]));
  }
  return expect === actual ? [] : [`${path}: expected ${show(expect)}, got ${show(actual)}`];
}

function between(path: string, arg: Json, actual: unknown): string[] {
  const [lo, hi] = arg as [number, number];
  const n = typeof actual === "string" && /^-?\d+$/.test(actual.trim()) ? Number(actual) : actual;
  return typeof n === "number" && n >= lo && n <= hi
    ? []
    : [`${path}: expected a number in [${lo}, ${hi}], got ${show(actual)}`];
}

function matches(path: string, arg: Json, actual: unknown): string[] {
  return typeof actual === "string" && new RegExp(arg as string).test(actual)
    ? []
    : [`${path}: expected to match ${String(arg)}, got ${show(actual)}`];
}

function isObject(value: unknown): value is Record<string, Json> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function show(value: unknown): string {
  return value === undefined ? "nothing" : JSON.stringify(value);
}

/** `${run}` replaced in every string of a step. */
export function substitute<T>(value: T, run: string): T {
  const placeholder = "$" + "{run}"; // the contract's own placeholder, not a template
  return JSON.parse(JSON.stringify(value).replaceAll(placeholder, run)) as T;
}
