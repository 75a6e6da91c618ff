// Test helper: a real `wrangler dev` (workerd with local Durable Objects, D1, KV and R2) on a free
// loopback port with its own state folder, like tests/harness/lib.rs. Dev auth is opted into with
// --var AUTH_MODE:dev (honoured for loopback hosts only).
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, openSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
const wranglerBin = join(root, "node_modules/.bin/wrangler");
const env = {
  ...process.env,
  WRANGLER_SEND_METRICS: "false",
  CLOUDFLARE_CF_FETCH_ENABLED: "false",
  EDGEROOM_SKIP_BUILD: "1",
};

let built = false;
/** Builds the Worker once per process unless the caller did (EDGEROOM_PREBUILT=1, as scripts/test.sh sets). */
function ensureBuilt() {
  if (built || process.env.EDGEROOM_PREBUILT === "1") return;
  const result = spawnSync("sh", [join(root, "scripts/build-worker.sh")], { cwd: root, stdio: "inherit", env: { ...process.env, EDGEROOM_SKIP_BUILD: "0" } });
  if (result.status !== 0) throw new Error("building the Worker failed");
  built = true;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** A fresh state folder with the D1 migrations applied. */
export function newStateDir() {
  const dir = mkdtempSync(join(tmpdir(), "edgeroom-js-test-"));
  const result = spawnSync(wranglerBin, ["d1", "migrations", "apply", "DB", "--local", "--persist-to", dir], { cwd: root, env, encoding: "utf8" });
  if (result.status !== 0) throw new Error(`applying D1 migrations failed:\n${result.stdout}\n${result.stderr}`);
  return dir;
}

export class Server {
  /** Starts `wrangler dev` on fresh state (or `options.state`), on `options.port` or a free port. */
  static async start(options = {}) {
    ensureBuilt();
    const server = new Server(options.state ?? newStateDir(), options.port ?? (await freePort()), options.vars ?? {});
    await server.#launch();
    return server;
  }

  #child = null;
  #log;

  constructor(state, port, vars) {
    this.state = state;
    this.port = port;
    this.vars = vars;
  }

  get httpUrl() {
    return `http://127.0.0.1:${this.port}`;
  }

  async #launch() {
    this.#log = join(this.state, `wrangler-${this.port}-${Date.now()}.log`);
    const out = openSync(this.#log, "a");
    const vars = Object.entries({ AUTH_MODE: "dev", ...this.vars }).flatMap(([k, v]) => ["--var", `${k}:${v}`]);
    const args = ["dev", "--local", "--ip", "127.0.0.1", "--port", String(this.port), "--persist-to", this.state, "--inspector-port", "0", ...vars];
    // Own process group, so stopping it also stops workerd.
    this.#child = spawn(wranglerBin, args, { cwd: root, env, stdio: ["ignore", out, out], detached: true });
    const deadline = Date.now() + 120_000;
    for (;;) {
      try {
        const response = await fetch(`${this.httpUrl}/healthz`);
        if (response.ok) return;
      } catch {
        // not up yet
      }
      if (this.#child.exitCode !== null) throw new Error(`wrangler dev exited early:\n${this.logTail()}`);
      if (Date.now() > deadline) throw new Error(`wrangler dev not ready:\n${this.logTail()}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  logTail() {
    try {
      return readFileSync(this.#log, "utf8").split("\n").slice(-40).join("\n");
    } catch {
      return "";
    }
  }

  /** Stops the whole process group and waits until it is gone. */
  async stop() {
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    try {
      process.kill(-child.pid, "SIGTERM");
    } catch {
      return;
    }
    const timeout = new Promise((resolve) => setTimeout(resolve, 5000));
    await Promise.race([exited, timeout]);
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {
      // already gone
    }
    this.#child = null;
  }

  /** Stops the server and starts it again on the same port and state (a runtime restart). */
  async restart() {
    await this.stop();
    await this.#launch();
  }

  /** Stops the server and deletes its state. */
  async dispose() {
    await this.stop();
    if (existsSync(this.state)) rmSync(this.state, { recursive: true, force: true });
  }
}
