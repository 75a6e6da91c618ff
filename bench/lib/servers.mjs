// Starting and watching the two servers of the benchmark: edgeroom and the partyserver peer, each
// its own `wrangler dev` (the repository's wrangler 4.86.0, so the same local workerd) on a free
// loopback port with its own state folder, in its own process group.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, openSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { freePort } from "../../tests/js/server.mjs";
import { join } from "node:path";

export const env = {
  ...process.env,
  WRANGLER_SEND_METRICS: "false",
  CLOUDFLARE_CF_FETCH_ENABLED: "false",
  EDGEROOM_SKIP_BUILD: "1",
};

/** The file system type of the mount a folder is on (`ext4`, `tmpfs`, …), from `findmnt`. */
export function fsType(dir) {
  const result = spawnSync("findmnt", ["-n", "-o", "FSTYPE", "--target", dir], { encoding: "utf8" });
  if (result.status === 0 && result.stdout.trim()) return result.stdout.trim().split("\n")[0];
  const stat = spawnSync("stat", ["-f", "-c", "%T", dir], { encoding: "utf8" });
  return stat.status === 0 ? stat.stdout.trim() : "unknown";
}

export class Wrangler {
  /**
   * @param {object} o
   * @param {string} o.name   label for logs
   * @param {string} o.root   repository root (node_modules/.bin/wrangler)
   * @param {string} o.cwd    where wrangler runs (the config's folder)
   * @param {string[]} o.configArgs  e.g. ["-c", "wrangler.jsonc"]
   * @param {string} o.parent folder to make the state folder in
   * @param {Record<string,string>} o.vars
   * @param {boolean} o.migrate apply edgeroom's D1 migrations first
   */
  static async start(o) {
    const w = new Wrangler(o);
    w.state = mkdtempSync(join(o.parent, `edgeroom-bench-${o.name}-`));
    if (o.migrate) {
      const apply = () =>
        spawnSync(join(o.root, "node_modules/.bin/wrangler"), ["d1", "migrations", "apply", "DB", "--local", "--persist-to", w.state], {
          cwd: o.cwd,
          env,
          encoding: "utf8",
        });
      let result = apply();
      for (let i = 0; i < 2 && result.status !== 0; i++) {
        await new Promise((r) => setTimeout(r, 2000));
        result = apply();
      }
      if (result.status !== 0) throw new Error(`${o.name}: D1 migrations failed:\n${result.stdout}\n${result.stderr}`);
    }
    w.port = await freePort();
    w.log = join(w.state, "wrangler.log");
    const out = openSync(w.log, "a");
    const vars = Object.entries(o.vars ?? {}).flatMap(([k, v]) => ["--var", `${k}:${v}`]);
    const args = ["dev", ...o.configArgs, "--local", "--ip", "127.0.0.1", "--port", String(w.port), "--persist-to", w.state, "--inspector-port", "0", ...vars];
    // A dev registry of its own: two servers running Workers of the same names (the split deploy's)
    // must not reach each other's objects.
    const ownEnv = { ...env, WRANGLER_REGISTRY_PATH: join(w.state, "registry") };
    w.child = spawn(join(o.root, "node_modules/.bin/wrangler"), args, { cwd: o.cwd, env: ownEnv, stdio: ["ignore", out, out], detached: true });
    const deadline = Date.now() + 120_000;
    for (;;) {
      try {
        const response = await fetch(`${w.url}/healthz`);
        if (response.ok) break;
      } catch {
        // not up yet
      }
      if (w.child.exitCode !== null) throw new Error(`${o.name}: wrangler dev exited early:\n${w.logTail()}`);
      if (Date.now() > deadline) throw new Error(`${o.name}: wrangler dev not ready:\n${w.logTail()}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    return w;
  }

  constructor(o) {
    this.name = o.name;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  logTail() {
    try {
      return readFileSync(this.log, "utf8").split("\n").slice(-30).join("\n");
    } catch {
      return "";
    }
  }

  /**
   * CPU seconds (user + system) used so far by this server's processes, from /proc:
   * `workerd` (the runtime that runs the Worker and its objects) and `all` (the whole process
   * group: wrangler's Node process included).
   */
  cpu() {
    const pgid = this.child.pid;
    let workerd = 0;
    let all = 0;
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      let stat;
      try {
        stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      } catch {
        continue;
      }
      const close = stat.lastIndexOf(")");
      const comm = stat.slice(stat.indexOf("(") + 1, close);
      const fields = stat.slice(close + 2).split(" ");
      // fields[0] is field 3 (state): pgrp is field 5, utime 14, stime 15.
      if (Number(fields[2]) !== pgid) continue;
      const seconds = (Number(fields[11]) + Number(fields[12])) / 100;
      all += seconds;
      if (comm.startsWith("workerd")) workerd += seconds;
    }
    return { workerd, all };
  }

  /** Stops the whole process group and deletes the state. */
  async dispose() {
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      try {
        process.kill(-child.pid, "SIGTERM");
      } catch {
        // gone
      }
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        // gone
      }
    }
    rmSync(this.state, { recursive: true, force: true });
  }
}
