#!/usr/bin/env node
// edgeroom against partyserver: builds both, runs every scenario on both (alternating in rounds)
// with the local state on tmpfs and on disk, and writes bench/RESULTS.md, bench/results.json and
// the latency plots bench/plots/*.svg. See bench/README.md.
//
//   bench/run.sh [--quick] [--rounds N] [--storage tmpfs,disk] [--only a,b] [--step-seconds S]
//                [--budget-minutes M] [--no-build] [--out DIR]
import { spawn, spawnSync } from "node:child_process";
import { createServer } from "node:http";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, statSync } from "node:fs";
import { cpus, totalmem, release } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { Wrangler, env, fsType } from "./lib/servers.mjs";
import { writeReport } from "./lib/report.mjs";
import { settle } from "./lib/settle.mjs";
import { writeSplitBenchConfigs } from "./lib/detached-config.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const benchDir = join(root, "bench");

// ------------------------------------------------------------------------------------------------
// Options

const argv = process.argv.slice(2);
const flag = (name) => argv.includes(`--${name}`);
const option = (name, fallback) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : fallback;
};
if (flag("help")) {
  console.log(readFileSync(fileURLToPath(import.meta.url), "utf8").split("\n").slice(1, 7).join("\n"));
  process.exit(0);
}
const quick = flag("quick");
const opts = {
  quick,
  rounds: Number(option("rounds", quick ? 1 : 3)),
  stepSeconds: Number(option("step-seconds", quick ? 1 : 2)),
  storages: option("storage", "tmpfs,disk").split(","),
  only: option("only", "") ? option("only", "").split(",") : null,
  // Wall-time budget: rounds that would not fit are left out (and RESULTS.md says so).
  budgetMinutes: Number(option("budget-minutes", quick ? 3 : 38)),
  build: !flag("no-build"),
  out: option("out", benchDir),
};
const ADMIN_KEY = "bench-admin-key-0123456789abcdef";
const cli = join(root, "target/release/edgeroom");
const started = Date.now();

function log(line) {
  const t = ((Date.now() - started) / 1000).toFixed(0).padStart(4);
  process.stderr.write(`[${t}s] ${line}\n`);
}

// ------------------------------------------------------------------------------------------------
// Scenarios. Each `pubsub` sweep runs its steps in one room: open-loop rates rising (skipped
// once a step saturates), then a closed-loop step (the saturation throughput).

const S = opts.stepSeconds;
const sweeps = quick
  ? [
      { id: "fanout10", subscribers: 10, steps: "rate:500,rate:2000,window:20" },
      { id: "fanout100", subscribers: 100, steps: "rate:200,window:20" },
      { id: "fanout500", subscribers: 500, steps: "rate:20,window:5" },
    ]
  : [
      { id: "fanout10", subscribers: 10, steps: "rate:500,rate:1000,rate:2000,rate:4000,window:20" },
      { id: "fanout100", subscribers: 100, steps: "rate:50,rate:100,rate:200,rate:400,rate:800,window:20" },
      { id: "fanout500", subscribers: 500, steps: "rate:10,rate:20,rate:50,rate:100,window:20" },
    ];
const plan = {
  sweeps,
  rooms: { rooms: quick ? 50 : 200, subscribers: 4, publishers: 1, steps: quick ? "rate:500,window:2" : "rate:1000,rate:4000,window:2" },
  join: { clients: quick ? 200 : 500 },
  resumeStorm: { clients: quick ? 100 : 1000, missed: 1000 },
  resumeOne: { clients: 1, missed: 1000 },
  connect: { count: quick ? 5 : 10 },
  counter: { concurrency: 16, seconds: quick ? 1 : 3, shards: [1, 8] },
  snapshot: { sizes: quick ? [1000, 10000] : [1000, 10000, 100000], bigOnlyOnce: 100000 },
  cost: [
    { id: "cost100", subscribers: 100, rate: 200 },
    { id: "cost10", subscribers: 10, rate: 1000 },
  ],
  // The sweep's 200 msg/s step to 100 subscribers runs twice more per round on its own: the
  // p50/p99 target at that rate otherwise rests on one 2-second step (400 messages) per round.
  light: { id: "fanout100-200", subscribers: 100, steps: "rate:200", extraPasses: quick ? 0 : 2 },
  // Three passes per round: a 2-second step's p99 rests on a handful of messages, so the export
  // rows need more samples than the rounds alone give.
  export: { subscribers: 100, steps: "rate:200,window:20", passes: quick ? 1 : 3 },
  pause_ms: quick ? 300 : 1000,
};
// The load generator's arguments for one room with 2 publishers: subscribers, load steps, and
// seconds per step (drained for up to 8 s after).
const oneRoomArgs = (subscribers, steps, seconds = S) => [
  "--subscribers", String(subscribers), "--publishers", "2", "--steps", steps, "--step-duration", `${seconds}s`, "--drain", "8s",
];
const wanted = (id) => !opts.only || opts.only.some((o) => id === o || id.startsWith(o));

// ------------------------------------------------------------------------------------------------
// Build

function run(cmd, args, { env = {}, ...o } = {}) {
  // The given variables add to this process's environment (PATH, HOME), never replace it.
  const result = spawnSync(cmd, args, { cwd: root, stdio: ["ignore", "inherit", "inherit"], ...o, env: { ...process.env, ...env } });
  if (result.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${result.status})`);
}
function output(cmd, args, o = {}) {
  const result = spawnSync(cmd, args, { cwd: root, encoding: "utf8", ...o });
  return result.status === 0 ? result.stdout.trim() : "";
}

if (opts.build) {
  log("building the release Worker (scripts/build-worker.sh), the split deploy's three and the edgeroom CLI");
  for (const worker of ["all", "split"]) {
    run("sh", ["scripts/build-worker.sh", worker], { env: { EDGEROOM_SKIP_BUILD: "0", EDGEROOM_FAULT_INJECTION: "0" } });
  }
  run("cargo", ["build", "--release", "--quiet", "-p", "edgeroom-client"]);
}
const peerDir = join(benchDir, "peer");
{
  const stamp = join(peerDir, "node_modules/.lock-hash");
  const hash = output("sha256sum", [join(peerDir, "package-lock.json")]).split(" ")[0];
  if (!existsSync(stamp) || readFileSync(stamp, "utf8") !== hash) {
    log("installing the peer's npm packages (bench/peer, npm ci)");
    run("npm", ["ci", "--no-audit", "--no-fund", "--loglevel=error"], { cwd: peerDir });
    writeFileSync(stamp, hash);
  }
}
if (!existsSync(cli)) throw new Error(`${cli} is missing: run without --no-build`);
/** The Workers of the split deploy (deploy/*.toml), which is what `scripts/deploy.sh` uploads. */
const splitWorkers = ["router", "rooms", "counters"];
for (const dir of ["build", ...splitWorkers.map((w) => `build/${w}`)]) {
  if (!existsSync(join(root, dir, "index_bg.wasm"))) throw new Error(`${dir}/index_bg.wasm is missing: run without --no-build`);
}

// Sizes: edgeroom's Workers (each of the split deploy as uploaded, and the one Worker of local
// development) and the peer's bundle (wrangler's own esbuild, as deployed).
function sizeOf(files) {
  let raw = 0;
  const parts = [];
  for (const file of files) {
    const bytes = readFileSync(file);
    raw += bytes.length;
    parts.push(bytes);
  }
  const gzip = gzipSync(Buffer.concat(parts), { level: 9 }).length;
  return { raw, gzip };
}
const peerOut = join(root, "target/bench-peer-bundle");
run(join(root, "node_modules/.bin/wrangler"), ["deploy", "--dry-run", "--outdir", peerOut, "-c", "wrangler.jsonc"], {
  cwd: peerDir,
  env,
  stdio: ["ignore", "ignore", "inherit"],
});
const sizes = {
  edgeroom_wasm: sizeOf([join(root, "build/index_bg.wasm")]),
  edgeroom_worker: sizeOf([join(root, "build/index.js"), join(root, "build/index_bg.wasm")]),
  edgeroom_split: Object.fromEntries(
    splitWorkers.map((w) => [w, sizeOf([join(root, "build", w, "index.js"), join(root, "build", w, "index_bg.wasm")])]),
  ),
  peer_bundle: sizeOf([join(peerOut, "index.js")]),
};
log(`sizes: edgeroom wasm ${sizes.edgeroom_wasm.raw} B raw / ${sizes.edgeroom_wasm.gzip} B gzip; split deploy ${splitWorkers.map((w) => `${w} ${sizes.edgeroom_split[w].gzip}`).join(", ")} B gzip; peer bundle ${sizes.peer_bundle.raw} / ${sizes.peer_bundle.gzip}`);

// ------------------------------------------------------------------------------------------------
// The generator

/**
 * Runs `edgeroom bench …` against a server; `onMarker(kind, step)` is awaited for each `@ready k`
 * / `@done k` line it prints around a step. Resolves to its JSON report.
 */
function generator(server, target, args, onMarker) {
  return new Promise((resolve, reject) => {
    const child = spawn(cli, ["--url", server.url, "bench", "--target", target, ...args], {
      cwd: root,
      env: { ...process.env, RUST_LOG: "warn" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    let pending = Promise.resolve();
    child.stdout.on("data", (d) => (stdout += d));
    let partial = "";
    child.stderr.on("data", (d) => {
      partial += d;
      const lines = partial.split("\n");
      partial = lines.pop();
      for (const line of lines) {
        const m = /^@(ready|done|skip) (\d+)$/.exec(line);
        if (m && onMarker) {
          // Sample synchronously (CPU) now; async work (metrics) chained in order.
          pending = pending.then(() => onMarker(m[1], Number(m[2])));
        } else if (!m) {
          stderr += line + "\n";
        }
      }
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 10 * 60_000);
    child.on("exit", async (code) => {
      clearTimeout(timer);
      await pending.catch(() => {});
      if (code !== 0) return reject(new Error(`edgeroom bench ${args.join(" ")} exited ${code}:\n${stderr.slice(-2000)}`));
      try {
        resolve({ report: JSON.parse(stdout), warnings: stderr.trim() });
      } catch (e) {
        reject(new Error(`bad generator output: ${stdout.slice(0, 500)}\n${stderr.slice(-1000)}`));
      }
    });
  });
}

/** How the wait for a quiet machine before a run went, for the log (nothing when it was quiet). */
function settled({ waited_ms, first, last, quiet }) {
  if (waited_ms < 1_000) return "";
  const pct = (x) => `${Math.round(x * 100)}%`;
  return `; waited ${(waited_ms / 1000).toFixed(1)} s for a quiet machine: ${pct(first)} → ${pct(last)} busy${quiet ? "" : ", gave up"}`;
}

/** The export scenario's room suffix for one pass of one round. */
function exportRoomName(round, pass) {
  return `${round}-${pass}`;
}

/** Every export room suffix the rounds will use (their rooms are warmed up first). */
function exportRoomNames() {
  return Array.from({ length: opts.rounds }, (_, round) => Array.from({ length: plan.export.passes }, (_, pass) => exportRoomName(round, pass))).flat();
}

async function admin(server, path, body) {
  const response = await fetch(`${server.url}${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: { authorization: `Bearer ${ADMIN_KEY}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
  return response.json();
}
const roomMetrics = async (server, tenant, room) => (await admin(server, `/v1/admin/t/${tenant}/rooms/${room}/metrics?window_ms=1000`)).live;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * One pubsub run with per-step server CPU (and, for edgeroom, room metrics) sampled at the step
 * markers. Returns the report with `server_cpu` and `metrics` added to each step.
 */
async function pubsubRun(sys, address, args, metricsOf) {
  const marks = {};
  const onMarker = async (kind, k) => {
    const at = { cpu: sys.server.cpu(), t: Date.now() };
    if (metricsOf) {
      try {
        at.metrics = (await metricsOf()).metrics;
      } catch (e) {
        at.metricsError = String(e);
      }
    }
    (marks[k] ??= {})[kind] = at;
  };
  const { report, warnings } = await generator(sys.server, sys.target, ["pubsub", address, ...args], onMarker);
  for (const step of report.steps) {
    const m = marks[step.step];
    if (step.skipped || !m?.ready || !m?.done) continue;
    step.server_cpu_s = { workerd: m.done.cpu.workerd - m.ready.cpu.workerd, all: m.done.cpu.all - m.ready.cpu.all };
    step.window_s = (m.done.t - m.ready.t) / 1000;
    if (m.ready.metrics && m.done.metrics) {
      const d = {};
      for (const [k, v] of Object.entries(m.done.metrics)) if (typeof v === "number") d[k] = v - (m.ready.metrics[k] ?? 0);
      step.metrics = d;
    }
  }
  if (warnings) report.warnings = warnings.split("\n").slice(-5);
  return report;
}

// ------------------------------------------------------------------------------------------------
// The run

const results = { options: opts, plan, sizes, storages: {}, started: new Date().toISOString() };
const receiverState = { exported: 0 };
const receiver = createServer((req, res) => {
  let body = "";
  req.on("data", (c) => (body += c));
  req.on("end", () => {
    try {
      receiverState.exported += JSON.parse(body).events?.length ?? 0;
    } catch {
      // counted as missing
    }
    res.writeHead(200).end("ok");
  });
});
await new Promise((r) => receiver.listen(0, "127.0.0.1", r));
const receiverUrl = `http://127.0.0.1:${receiver.address().port}/hooks`;

const storageParents = {
  tmpfs: "/dev/shm",
  disk: (() => {
    const dir = join(root, "target/bench-state");
    mkdirSync(dir, { recursive: true });
    return dir;
  })(),
};

let servers = [];
async function cleanup() {
  await Promise.all(servers.map((s) => s.dispose().catch(() => {})));
  servers = [];
}
process.on("SIGINT", async () => {
  await cleanup();
  process.exit(130);
});

const budgetEnd = started + opts.budgetMinutes * 60_000;
// edgeroom as deployed: the split deploy's three Workers in one wrangler dev, with and (for the
// export scenario) without queue consumers. The vars go into each Worker's config (`--var` would
// reach only the router). Removed at the end.
const edgeroomVars = { AUTH_MODE: "dev", ADMIN_KEY, RATE_LIMIT_PER_SEC: "1000000", RATE_LIMIT_BURST: "1000000", ...JSON.parse(process.env.EDGEROOM_BENCH_VARS ?? "{}") };
const benchConfigs = writeSplitBenchConfigs(root, { consumers: true, vars: edgeroomVars });
const detached = writeSplitBenchConfigs(root, { consumers: false, vars: edgeroomVars });
const configFiles = [...benchConfigs.files, ...detached.files];
try {
  for (const [storageIndex, storage] of opts.storages.entries()) {
    const storageStart = Date.now();
    const storageEnd = storageStart + (budgetEnd - storageStart) / (opts.storages.length - storageIndex);
    const parent = storageParents[storage];
    if (!parent) throw new Error(`unknown storage ${storage}: use tmpfs or disk`);
    log(`== ${storage}: state under ${parent} (${fsType(parent)}); starting edgeroom and the peer`);
    const serverOptions = {
      edgeroom: {
        name: "edgeroom",
        root,
        cwd: root,
        // Without [build]: the runner built the Workers, and wrangler's watcher of src/ once
        // restarted a server mid-run ("The file src changed") with nothing changed.
        configArgs: benchConfigs.configArgs,
        parent,
        migrate: true,
        vars: {},
      },
      partyserver: { name: "peer", root, cwd: peerDir, configArgs: ["-c", "wrangler.jsonc"], parent, vars: {} },
    };
    // Export off and on with the consumer elsewhere run on an edgeroom whose queue has no consumer
    // in its workerd (bench/lib/detached-config.mjs); export on with the consumer in the same
    // workerd runs on the main one.
    if (wanted("export")) {
      serverOptions["edgeroom-detached"] = { ...serverOptions.edgeroom, name: "edgeroom-detached", configArgs: detached.configArgs };
    }
    const names = Object.keys(serverOptions);
    const started2 = await Promise.allSettled(names.map((name) => Wrangler.start(serverOptions[name])));
    for (const s of started2) if (s.status === "fulfilled") servers.push(s.value);
    for (const s of started2) if (s.status === "rejected") throw s.reason;
    const serverOf = (name) => started2[names.indexOf(name)]?.value;
    const systems = {
      edgeroom: { name: "edgeroom", target: "edgeroom", server: serverOf("edgeroom"), scope: "bench" },
      partyserver: { name: "partyserver", target: "partyserver", server: serverOf("partyserver"), scope: "room" },
    };
    if (serverOptions["edgeroom-detached"]) {
      systems["edgeroom-detached"] = { name: "edgeroom-detached", target: "edgeroom", server: serverOf("edgeroom-detached"), scope: "bench" };
    }
    const out = (results.storages[storage] = { parent, fs: fsType(parent), runs: [] });
    // --quick keeps to its time by running only the fan-out sweeps on disk (the sync comparison).
    const skipped = (id) => quick && storage === "disk" && id !== "fanout10" && id !== "fanout100";
    out.subset = quick && storage === "disk" ? "only the 10- and 100-subscriber sweeps (--quick)" : "all";
    let roundsStart = Date.now();
    const record = (entry) => {
      out.runs.push(entry);
      return entry;
    };

    // Export: a webhook for tenant `exporton` to the loopback receiver; its rooms (and the
    // `exportoff` ones, two per round) get one message first and one flush interval to load the
    // export filter.
    const setupExport = async (server) => {
      if (!wanted("export") || skipped("export")) return;
      await admin(server, "/v1/admin/t/exporton/webhooks/create", {
        url: receiverUrl,
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        kinds: ["message"],
      });
      for (const name of exportRoomNames()) {
        for (const room of [`exporton/rooms/x${name}`, `exportoff/rooms/x${name}`, `exportoff/rooms/y${name}`]) {
          const r = await fetch(`${server.url}/v1/t/${room}/messages`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ body: { t: 0 } }),
          });
          if (!r.ok) throw new Error(`warm-up publish: ${r.status}`);
        }
      }
      await sleep(6000);
    };
    // A server that died (its process group gone, or not answering) is started again on fresh
    // state, and the run is retried once; RESULTS.md lists the restarts.
    out.restarts = [];
    const ensureAlive = async (name) => {
      const sys = systems[name];
      const child = sys.server.child;
      let alive = child.exitCode === null && child.signalCode === null;
      if (alive) {
        try {
          alive = (await fetch(`${sys.server.url}/healthz`, { signal: AbortSignal.timeout(10_000) })).ok;
        } catch {
          alive = false;
        }
      }
      if (alive) return false;
      const why = child.exitCode !== null ? `exit ${child.exitCode}` : child.signalCode ? `signal ${child.signalCode}` : "not answering";
      log(`${storage}: ${name} server is down (${why}); starting it again on fresh state`);
      out.restarts.push({ system: name, why, at_s: (Date.now() - started) / 1000, log: sys.server.logTail().split("\n").slice(-8) });
      await sys.server.dispose().catch(() => {});
      servers = servers.filter((s) => s !== sys.server);
      sys.server = await Wrangler.start(serverOptions[name]);
      servers.push(sys.server);
      if (name.startsWith("edgeroom")) await setupExport(sys.server);
      return true;
    };
    for (const name of ["edgeroom", "edgeroom-detached"]) if (systems[name]) await setupExport(systems[name].server);
    roundsStart = Date.now();

    out.rounds_done = 0;
    for (let round = 0; round < opts.rounds; round++) {
      // Leave out rounds that would not fit in this storage's share of the budget (always run one).
      const perRound = out.rounds_done ? (Date.now() - roundsStart) / out.rounds_done : 0;
      if (round > 0 && Date.now() + perRound > storageEnd) {
        log(`${storage}: leaving out rounds ${round + 1}–${opts.rounds} to stay within --budget-minutes ${opts.budgetMinutes}`);
        break;
      }
      const order = round % 2 === 0 ? ["edgeroom", "partyserver"] : ["partyserver", "edgeroom"];
      const tag = `${storage[0]}${round}`;
      // One scenario on one system: restarted once if its server died, recorded, logged.
      const only = async (id, name, fn) => {
        if (!wanted(id) || skipped(id)) return;
        const t0 = Date.now();
        try {
          await ensureAlive(name);
          const quiet = await settle();
          let entry;
          try {
            entry = await fn(systems[name]);
          } catch (e) {
            if (!(await ensureAlive(name))) throw e;
            entry = await fn(systems[name]);
          }
          if (entry) record({ scenario: id, system: name, round, settle: quiet, ...entry });
          log(`${storage} r${round + 1}/${opts.rounds} ${id} ${name}: ${entry?.summary ?? "done"} (${((Date.now() - t0) / 1000).toFixed(1)} s${settled(quiet)})`);
        } catch (e) {
          record({ scenario: id, system: name, round, error: String(e.message ?? e).slice(0, 2000) });
          log(`${storage} r${round + 1} ${id} ${name}: FAILED ${String(e.message ?? e).split("\n")[0]}`);
        }
        await sleep(plan.pause_ms);
      };
      // One scenario on both systems, in this round's order.
      const both = async (id, fn) => {
        for (const name of order) await only(id, name, fn);
      };
      const stepSummary = (report) =>
        report.steps
          .filter((s) => !s.skipped)
          .map((s) => `${s.rate ?? "w" + s.window}→${Math.round(s.delivered_per_s)}/s p50 ${s.latency_ms?.p50 ?? "-"}`)
          .join(", ");

      // 1. One room, 10 / 100 / 500 subscribers, rising rates up to saturation.
      for (const sweep of plan.sweeps) {
        await both(sweep.id, async (sys) => {
          const room = `${sweep.id}-${tag}`;
          const report = await pubsubRun(
            sys,
            `${sys.scope}/${room}`,
            oneRoomArgs(sweep.subscribers, sweep.steps),
            sys.name === "edgeroom" ? () => roomMetrics(systems.edgeroom.server, sys.scope, room) : null,
          );
          return { report, summary: stepSummary(report) };
        });
      }
      for (let pass = 1; pass <= plan.light.extraPasses; pass++) {
        await both(plan.light.id, async (sys) => {
          const report = await pubsubRun(sys, `${sys.scope}/${plan.light.id}-${tag}-${pass}`, oneRoomArgs(plan.light.subscribers, plan.light.steps));
          return { report, summary: stepSummary(report) };
        });
      }
      // 2. 200 rooms of 5 clients (4 subscribers and 1 publisher each).
      await both("rooms", async (sys) => {
        const p = plan.rooms;
        const report = await pubsubRun(sys, `${sys.scope}/rooms-${tag}`, [
          "--rooms", String(p.rooms), "--subscribers", String(p.subscribers), "--publishers", String(p.publishers),
          "--steps", p.steps, "--step-duration", `${S}s`, "--drain", "8s", "--connect-concurrency", "32",
        ]);
        return { report, summary: stepSummary(report) };
      });
      // Billable units and rows written per delivery (edgeroom's own metrics).
      for (const c of plan.cost) {
        await only(c.id, "edgeroom", async (sys) => {
          const room = `${c.id}-${tag}`;
          const report = await pubsubRun(
            sys,
            `${sys.scope}/${room}`,
            oneRoomArgs(c.subscribers, `rate:${c.rate}`, S + 1),
            () => roomMetrics(systems.edgeroom.server, sys.scope, room),
          );
          const live = await roomMetrics(systems.edgeroom.server, sys.scope, room);
          return { report, live, summary: `${live.metrics.rows_written} rows written, ${live.metrics.deliveries} deliveries` };
        });
      }
      // Export off, on with the consumer elsewhere, on with the consumer in the room's workerd; 100
      // subscribers (edgeroom only; the order rotates every pass, each pass in rooms of its own).
      for (let pass = 0; wanted("export") && pass < plan.export.passes; pass++) {
        const name = exportRoomName(round, pass);
        const variants = [
          { id: "export-off", tenant: "exportoff", room: `x${name}`, system: "edgeroom-detached" },
          { id: "export-on-detached", tenant: "exporton", room: `x${name}`, system: "edgeroom-detached" },
          { id: "export-on", tenant: "exporton", room: `x${name}`, system: "edgeroom" },
          // The same as export-off in another room: how far two identical runs differ here.
          { id: "export-off-again", tenant: "exportoff", room: `y${name}`, system: "edgeroom-detached" },
        ];
        const shift = round * plan.export.passes + pass;
        for (const { id, tenant, room, system } of variants.map((_, i) => variants[(i + shift) % variants.length])) {
          await only(id, system, async (sys) => {
            const before = receiverState.exported;
            // The room's own counts per step (alarms, flushes, queue sends, rows) go to results.json.
            const report = await pubsubRun(sys, `${tenant}/${room}`, oneRoomArgs(plan.export.subscribers, plan.export.steps), () =>
              roomMetrics(sys.server, tenant, room),
            );
            const acked = report.steps.reduce((a, s) => a + (s.acked ?? 0), 0);
            const ended = Date.now();
            if (id === "export-on") {
              while (receiverState.exported - before < acked && Date.now() - ended < 30_000) await sleep(100);
            }
            return { report, exported: receiverState.exported - before, acked, drain_ms: Date.now() - ended, summary: stepSummary(report) };
          });
        }
      }
      // Join storm with presence.
      await both("join", async (sys) => {
        const { report } = await generator(sys.server, sys.target, ["join", `${sys.scope}/join-${tag}`, "--clients", String(plan.join.clients)]);
        return { report, summary: `all converged in ${report.all_converged_ms?.toFixed(0)} ms, ${report.frames} frames` };
      });
      // Resume: one client, then 1,000 at once, each missing 1,000 events.
      for (const [id, p] of [["resume1", plan.resumeOne], ["resume", plan.resumeStorm]]) {
        await both(id, async (sys) => {
          const cpu0 = sys.server.cpu();
          const { report } = await generator(sys.server, sys.target, [
            "resume", `${sys.scope}/${id}-${tag}`, "--clients", String(p.clients), "--missed", String(p.missed),
          ]);
          const cpu1 = sys.server.cpu();
          return { report, cpu_s: cpu1.workerd - cpu0.workerd, summary: `p50 ${report.resume_ms.p50} ms, all in ${report.all_done_ms.toFixed(0)} ms (${report.complete}/${report.clients})` };
        });
      }
      // First connect to a new room.
      await both("connect", async (sys) => {
        const { report } = await generator(sys.server, sys.target, ["connect", `${sys.scope}/new-${tag}`, "--count", String(plan.connect.count)]);
        return { report, summary: `p50 ${report.first_connect_ms.p50} ms` };
      });
      // Counters (edgeroom only: partyserver has no counter).
      for (const shards of plan.counter.shards) {
        await only(`counter${shards}`, "edgeroom", async (sys) => {
          const { report } = await generator(sys.server, "edgeroom", [
            "counter", `bench/likes-${shards}-${tag}`, "--concurrency", String(plan.counter.concurrency), "--duration", `${plan.counter.seconds}s`, "--shards", String(shards),
          ]);
          return { report, summary: `${report.adds_per_s.toFixed(0)} adds/s, p50 ${report.latency_ms.p50} ms` };
        });
      }
      // Snapshot flush time and size (edgeroom only).
      for (const size of plan.snapshot.sizes) {
        if (size >= plan.snapshot.bigOnlyOnce && round > 0) continue;
        await only(`snapshot${size}`, "edgeroom", async (sys) => {
          const room = `snap${size}-${tag}`;
          const { report: filled } = await generator(sys.server, "edgeroom", ["fill", `bench/${room}`, "--events", String(size), "--window", "100", "--size", "64"]);
          await sleep(300);
          const t0 = performance.now();
          await admin(systems.edgeroom.server, `/v1/admin/t/bench/rooms/${room}/flush`, {});
          const flushMs = performance.now() - t0;
          const snapshots = await admin(systems.edgeroom.server, `/v1/admin/t/bench/rooms/${room}/snapshots`);
          const list = Array.isArray(snapshots) ? snapshots : (snapshots.snapshots ?? []);
          const newest = list[0];
          return { fill: filled, flush_ms: flushMs, bytes: newest?.bytes, seq: newest?.seq, summary: `flush ${flushMs.toFixed(0)} ms, ${newest?.bytes} B` };
        });
      }
      out.rounds_done = round + 1;
    }
    await cleanup();
  }
} finally {
  await cleanup();
  receiver.close();
  for (const file of configFiles) rmSync(join(root, file), { force: true });
}

// ------------------------------------------------------------------------------------------------
// Versions and the report

const version = (dir) => JSON.parse(readFileSync(join(dir, "package.json"), "utf8")).version;
results.finished = new Date().toISOString();
results.elapsed_s = (Date.now() - started) / 1000;
results.machine = {
  cpu: cpus()[0]?.model ?? "cpu",
  cores: cpus().length,
  memory_gib: Math.round(totalmem() / 2 ** 30),
  kernel: release(),
  loadavg_at_end: readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" "),
};
results.versions = {
  node: process.version,
  wrangler: version(join(root, "node_modules/wrangler")),
  workerd: version(join(root, "node_modules/workerd")),
  partyserver: version(join(peerDir, "node_modules/partyserver")),
  rustc: output("rustc", ["--version"]),
  edgeroom_commit: output("git", ["rev-parse", "--short", "HEAD"]) + (output("git", ["status", "--porcelain", "--untracked-files=no"]) ? " (with uncommitted changes)" : ""),
};
results.command = `bench/run.sh ${argv.join(" ")}`.trim();
mkdirSync(join(opts.out, "plots"), { recursive: true });
writeFileSync(join(opts.out, "results.json"), JSON.stringify(results, null, 1));
writeReport(results, opts.out);
log(`wrote ${join(opts.out, "RESULTS.md")}, results.json and plots/ in ${results.elapsed_s.toFixed(0)} s`);
