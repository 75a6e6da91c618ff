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

/**
 * One `wrangler dev` in its own process group, with its log in `logDir`; ready once `readyPath`
 * answers below 500 (the port opens before workerd is ready, so it retries).
 */
class WranglerProcess {
  #child = null;
  #log;

  /** @param {{ bin: string, cwd: string, args: () => string[], env: Record<string, string>, readyPath: string, logDir: string, port: number }} spec */
  constructor(spec) {
    this.spec = spec;
    this.port = spec.port;
  }

  get httpUrl() {
    return `http://127.0.0.1:${this.port}`;
  }

  async launch() {
    const { bin, cwd, args, env: extraEnv, readyPath, logDir } = this.spec;
    this.#log = join(logDir, `wrangler-${this.port}-${Date.now()}.log`);
    const out = openSync(this.#log, "a");
    // Own process group, so stopping it also stops workerd.
    this.#child = spawn(bin, args(), { cwd, env: { ...env, ...extraEnv }, stdio: ["ignore", out, out], detached: true });
    const deadline = Date.now() + 120_000;
    for (;;) {
      try {
        const response = await fetch(`${this.httpUrl}${readyPath}`, { redirect: "manual" });
        if (response.status < 500) return;
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
}

/** edgeroom's Worker under `wrangler dev`, with fresh state (or `options.state`). */
export class Server extends WranglerProcess {
  /**
   * Starts `wrangler dev` on fresh state (or `options.state`), on `options.port` or a free port,
   * with `options.vars` (`--var`), `options.env` (extra environment, e.g. WRANGLER_REGISTRY_PATH)
   * and `options.config` (another wrangler config in the repository root; default wrangler.toml).
   */
  static async start(options = {}) {
    ensureBuilt();
    const server = new Server(options.state ?? newStateDir(), options.port ?? (await freePort()), options.vars ?? {}, options.env ?? {}, options.config);
    await server.launch();
    return server;
  }

  constructor(state, port, vars, extraEnv = {}, config = undefined) {
    super({
      bin: wranglerBin,
      cwd: root,
      env: extraEnv,
      readyPath: "/healthz",
      logDir: state,
      port,
      args: () => {
        const flags = Object.entries({ AUTH_MODE: "dev", ...this.vars }).flatMap(([k, v]) => ["--var", `${k}:${v}`]);
        const configArgs = config ? ["--config", config] : [];
        return ["dev", ...configArgs, "--local", "--ip", "127.0.0.1", "--port", String(this.port), "--persist-to", this.state, "--inspector-port", "0", ...flags];
      },
    });
    this.state = state;
    this.vars = vars;
  }

  /** Stops the server and starts it again on the same port and state (a runtime restart). */
  async restart() {
    await this.stop();
    await this.launch();
  }

  /** Stops the server and deletes its state. */
  /** Stops it and removes its state, unless `EDGEROOM_KEEP_STATE=1` keeps it (and the log) to look at. */
  async dispose() {
    await this.stop();
    if (process.env.EDGEROOM_KEEP_STATE === "1") console.log(`kept the state and log of wrangler dev in ${this.state}`);
    else if (existsSync(this.state)) rmSync(this.state, { recursive: true, force: true });
  }
}

/** The example in examples/nextjs-chat: built (its scripts/build.sh), then under its own pinned wrangler. */
export const nextExample = join(root, "examples/nextjs-chat");

export class NextApp extends WranglerProcess {
  /** Starts the built example on a free port with `options.vars` and `options.env`. */
  static async start(options = {}) {
    if (!existsSync(join(nextExample, ".open-next/worker.js"))) {
      throw new Error("examples/nextjs-chat is not built: run examples/nextjs-chat/scripts/build.sh (scripts/test.sh does)");
    }
    const state = mkdtempSync(join(tmpdir(), "edgeroom-nextjs-test-"));
    const app = new NextApp(state, await freePort(), options.vars ?? {}, options.env ?? {});
    await app.launch();
    return app;
  }

  constructor(state, port, vars, extraEnv) {
    super({
      bin: join(nextExample, "node_modules/.bin/wrangler"),
      cwd: nextExample,
      env: extraEnv,
      readyPath: "/",
      logDir: state,
      port,
      args: () => {
        const flags = Object.entries(vars).flatMap(([k, v]) => ["--var", `${k}:${v}`]);
        return ["dev", "--local", "--ip", "127.0.0.1", "--port", String(port), "--persist-to", state, "--inspector-port", "0", ...flags];
      },
    });
    this.state = state;
  }

  async dispose() {
    await this.stop();
    rmSync(this.state, { recursive: true, force: true });
  }
}
