#!/usr/bin/env node
// The cost model of a day, measured: runs each workload against a local `wrangler dev` at its
// real rate with the default settings, for a window of the day, reads what the service counted
// about itself (admin API: room and counter metrics), prices it with the service's own table
// (durable/src/pricing.rs, through the admin API's cost lines) and writes bench/cost-results.json
// and the generated section of docs/cost.md.
//
// Each run has two phases. Setup: the members connect (once a day) and the objects settle (their
// join flushes). Window: `--minutes` of the day's traffic at the day's average rate. A day is the
// setup once plus the window times (a day / the window). Nothing is compressed: every cadence of
// the service (flushes, snapshots, read-model leases, heartbeat sweeps) runs at its real pace, so
// the local runtime carries the real load, not a multiple of it.
//
//   node bench/cost.mjs [--minutes 10] [--workload chat|counter|busy|all] [--busy-minutes 6]
//   node bench/cost.mjs --render        # re-render docs/cost.md from bench/cost-results.json
import { randomUUID } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import WebSocket from "ws";
import { Server, root } from "../tests/js/server.mjs";

const DAY_MS = 86_400_000;
const TENANT = "cost";
const ADMIN_KEY = "cost-bench-admin-key-0123456789";
const RESULTS = join(root, "bench/cost-results.json");
const DOC = join(root, "docs/cost.md");
// The settings that schedule billed work, shown with the results (all at their defaults).
const CADENCE_SETTINGS = [
  "FLUSH_INTERVAL_MS",
  "SNAPSHOT_INTERVAL_MS",
  "SNAPSHOT_AFTER_EVENTS",
  "IDLE_SNAPSHOT_MS",
  "READ_MODEL_MIN_READS",
  "READ_MODEL_WINDOW_MS",
  "READ_MODEL_INTERVAL_MS",
  "READ_MODEL_TTL_S",
  "BATCH_DELAY_MS",
  "HISTORY_MAX_EVENTS",
  "HISTORY_MAX_AGE_MS",
  "HEARTBEAT_TIMEOUT_MS",
  "SWEEP_INTERVAL_MS",
];
// How long the setup waits for the objects' join flushes: the first check comes IDLE_SNAPSHOT_MS
// after a change; 15 s more for the check itself.
const SETTLE_MS = (limitDefaults().IDLE_SNAPSHOT_MS ?? 30_000) + 15_000;

function parseArgs(argv) {
  const args = { minutes: 10, workload: "all", busyMinutes: 6, render: false };
  for (let i = 2; i < argv.length; i++) {
    const [name, value] = [argv[i], argv[i + 1]];
    if (name === "--minutes") (args.minutes = Number(value)), i++;
    else if (name === "--workload") (args.workload = value), i++;
    else if (name === "--busy-minutes") (args.busyMinutes = Number(value)), i++;
    else if (name === "--render") args.render = true;
    else throw new Error(`unknown argument ${name}`);
  }
  return args;
}

/** Every setting of durable/src/limits.rs with its default: { NAME: number }. */
function limitDefaults() {
  const text = readFileSync(join(root, "durable/src/limits.rs"), "utf8");
  const defaults = {};
  for (const match of text.matchAll(/^\s*\w+:\s*[\w<>]+\s*=\s*([^,]+),\s*"([A-Z_]+)";/gm)) {
    const expr = match[1].replaceAll("_", "");
    if (/^[\d\s*+.]+$/.test(expr)) defaults[match[2]] = Function(`return (${expr})`)();
  }
  return defaults;
}

/** The defaults of the cadence settings, for the results table. */
function settingsTable() {
  const defaults = limitDefaults();
  return CADENCE_SETTINGS.filter((name) => name in defaults).map((name) => ({ name, default: defaults[name] }));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Counts what the runner sends through the router: every HTTP request and WebSocket upgrade. */
class Traffic {
  workerRequests = 0;
  kvReads = 0;
  constructor(server) {
    this.server = server;
  }
  /** What was counted since the last call. */
  take() {
    const counted = { workerRequests: this.workerRequests, kvReads: this.kvReads };
    this.workerRequests = 0;
    this.kvReads = 0;
    return counted;
  }
  async fetch(path, init) {
    this.workerRequests++;
    return fetch(`${this.server.httpUrl}${path}`, init);
  }
  /** Opens a socket and resolves on its first frame (welcome or counter value). */
  socket(path, onMessage) {
    this.workerRequests++;
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${this.server.port}${path}`);
      let first = true;
      ws.on("message", (data, binary) => {
        const text = data.toString();
        if (text === "pong") return;
        const message = JSON.parse(text);
        if (first) {
          first = false;
          resolve(ws);
        }
        onMessage?.(message, ws);
      });
      ws.on("error", reject);
      ws.on("close", (code) => {
        if (first) reject(new Error(`closed ${code} before the first frame`));
      });
    });
  }
}

async function admin(server, path) {
  const response = await fetch(`${server.httpUrl}${path}`, { headers: { Authorization: `Bearer ${ADMIN_KEY}` } });
  if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
  return response.json();
}

/** Opens `count` sockets, at most `parallel` at a time. */
async function openAll(count, parallel, open) {
  const sockets = new Array(count);
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < count) {
        const i = next++;
        for (let attempt = 0; ; attempt++) {
          try {
            sockets[i] = await open(i);
            break;
          } catch (error) {
            if (attempt >= 5) throw error;
            await sleep(200 * (attempt + 1));
          }
        }
      }
    }),
  );
  return sockets;
}

/** Calls `tick(n)` so that `total` calls spread evenly over `durationMs`, then waits for them. */
async function spread(total, durationMs, tick) {
  const started = Date.now();
  let sent = 0;
  const pending = new Set();
  while (sent < total) {
    const due = Math.min(total, Math.floor(((Date.now() - started) / durationMs) * total) + 1);
    while (sent < due) {
      const p = Promise.resolve(tick(sent++)).catch((error) => console.error(`  ${error.message}`));
      pending.add(p);
      p.finally(() => pending.delete(p));
    }
    await sleep(5);
  }
  await Promise.all(pending);
  return Date.now() - started;
}

/** Sends the text heartbeat on every socket every 20 s (answered by the runtime, never billed). */
function heartbeat(sockets) {
  const timer = setInterval(() => {
    for (const ws of sockets) if (ws.readyState === WebSocket.OPEN) ws.send("ping");
  }, 20_000);
  return () => clearInterval(timer);
}

/** A publish over a room socket, resolved on its ack. */
function publisher() {
  const waiting = new Map();
  return {
    onMessage(message) {
      if (message.type === "ack" && waiting.has(message.op_id)) {
        waiting.get(message.op_id)();
        waiting.delete(message.op_id);
      }
    },
    send(ws, frame) {
      const op_id = randomUUID();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ack for ${op_id}`)), 60_000);
        waiting.set(op_id, () => (clearTimeout(timer), resolve()));
        ws.send(JSON.stringify({ ...frame, op_id }));
      });
    },
  };
}

/** Sums the metrics and units the rooms and counters counted so far (cumulative). */
async function measure(server, rooms, counters) {
  const metrics = {};
  const units = {};
  const add = (into, from) => {
    for (const [k, v] of Object.entries(from)) if (typeof v === "number") into[k] = (into[k] ?? 0) + v;
  };
  for (const room of rooms) {
    const live = (await admin(server, `/v1/admin/t/${TENANT}/rooms/${room}/metrics?window_ms=86400000`)).live;
    add(metrics, live.metrics);
    add(units, live.units);
  }
  for (const counter of counters) {
    const live = (await admin(server, `/v1/admin/t/${TENANT}/counters/${counter}/metrics?window_ms=86400000`)).live;
    add(metrics, live.metrics);
    add(units, live.units);
  }
  const overview = await admin(server, `/v1/admin/t/${TENANT}`);
  const prices = overview.cost.estimate.lines.map((line) => line.price);
  return { metrics, units, prices };
}

/** What a metrics read costs the objects it reads: a room's, one request through the router; a
 *  counter's, two object requests (the home's state and metrics), not routed. */
function readCost(rooms, counters) {
  return {
    metrics: { requests: rooms + 2 * counters, worker_requests: rooms },
    units: { object_requests: rooms + 2 * counters, worker_requests: rooms },
  };
}

/** `later - earlier - minus` per key. */
function diff(later, earlier, minus = {}) {
  const out = {};
  for (const [k, v] of Object.entries(later)) if (typeof v === "number") out[k] = v - (earlier[k] ?? 0) - (minus[k] ?? 0);
  return out;
}

/** Measures the setup (cumulative at its end) and the window (what came after), without the
 *  metrics reads themselves. */
function phases(atSetup, atEnd, rooms, counters) {
  const one = readCost(rooms, counters);
  const setup = { metrics: diff(atSetup.metrics, {}, one.metrics), units: diff(atSetup.units, {}, one.units) };
  // The window's reading also saw the setup's metrics read (and its own).
  const window = {
    metrics: diff(atEnd.metrics, atSetup.metrics, one.metrics),
    units: diff(atEnd.units, atSetup.units, one.units),
  };
  return { setup, window };
}

/** A day: the setup once, plus the window `scale` times. Units no object sees (Workers requests
 *  the router answered alone, KV reads) come from the runner's own counts. */
function perDay(setup, window, traffic, scale) {
  const units = {};
  for (const key of new Set([...Object.keys(setup.units), ...Object.keys(window.units)])) {
    units[key] = (setup.units[key] ?? 0) + (window.units[key] ?? 0) * scale;
  }
  const seenByObjects = units.worker_requests ?? 0;
  const sent = traffic.setup.workerRequests + traffic.window.workerRequests * scale;
  units.worker_requests = Math.max(sent, seenByObjects);
  units.kv_reads = traffic.window.kvReads * scale;
  return { units, workerRequestsSeenByObjects: seenByObjects, workerRequestsSent: sent };
}

function price(units, prices, scale = 1) {
  return prices.map((p) => {
    const perDay = (units[p.unit] ?? 0) * scale;
    const paid = (Math.max(0, perDay * 30 - p.paid_included_per_month) / 1e6) * p.paid_usd_per_million;
    return { unit: p.unit, per_day: perDay, free_per_day: p.free_per_day, free_share: perDay / p.free_per_day, paid_usd_per_month: paid };
  });
}

async function withServer(run) {
  // The default settings: only the admin key is set.
  const server = await Server.start({ vars: { ADMIN_KEY, ...JSON.parse(process.env.EDGEROOM_COST_VARS ?? "{}") } });
  try {
    return await run(server);
  } finally {
    await server.dispose();
  }
}

/** The common shape of a run: connect (setup), settle, measure, run the window, measure. */
async function twoPhases(server, { rooms = [], counters = [], connect, window }) {
  const traffic = new Traffic(server);
  const sockets = await connect(traffic);
  const stop = heartbeat(sockets);
  try {
    console.log(`  setup done (${sockets.length} sockets); waiting ${SETTLE_MS / 1000} s for the join flushes`);
    await sleep(SETTLE_MS);
    const atSetup = await measure(server, rooms, counters);
    const setupTraffic = traffic.take();
    const elapsed = await window(traffic, sockets);
    // No settling here: the window ends as it began, with the objects mid-day; what is pending
    // now is like what was pending at its start.
    const atEnd = await measure(server, rooms, counters);
    const { setup, window: win } = phases(atSetup, atEnd, rooms.length, counters.length);
    return { elapsed, setup, window: win, prices: atEnd.prices, traffic: { setup: setupTraffic, window: traffic.take() } };
  } finally {
    stop();
    for (const ws of sockets) ws.close();
  }
}

// ---- workloads ------------------------------------------------------------------------------

async function chat(minutes) {
  const scale = DAY_MS / (minutes * 60_000);
  const spec = { rooms: 50, members: 20, messages: 200_000, restReads: 10_000 };
  const inWindow = { messages: Math.round(spec.messages / scale), restReads: Math.round(spec.restReads / scale) };
  const rooms = Array.from({ length: spec.rooms }, (_, i) => `chat-${i}`);
  return withServer(async (server) => {
    const pub = publisher();
    let acked = 0;
    let restFromObject = 0;
    const run = await twoPhases(server, {
      rooms,
      async connect(traffic) {
        console.log(`chat: ${spec.rooms} rooms x ${spec.members} members connecting`);
        return openAll(spec.rooms * spec.members, 10, async (i) => {
          const room = rooms[i % spec.rooms];
          const ws = await traffic.socket(`/v1/t/${TENANT}/rooms/${room}/ws?format=json`, (m) => pub.onMessage(m));
          ws.send(JSON.stringify({ type: "presence_set", data: { name: `user-${i}` } }));
          return ws;
        });
      },
      async window(traffic, sockets) {
        const durationMs = minutes * 60_000;
        console.log(`chat: ${inWindow.messages} messages and ${inWindow.restReads} REST reads in ${minutes} min at the day's average rate (x${scale.toFixed(1)} for the day)`);
        const reads = spread(inWindow.restReads, durationMs, async () => {
          const room = rooms[Math.floor(Math.random() * rooms.length)];
          const response = await traffic.fetch(`/v1/t/${TENANT}/rooms/${room}`);
          await response.arrayBuffer();
          traffic.kvReads++;
          if (response.headers.get("x-edgeroom-source") !== "kv") restFromObject++;
        });
        const messages = spread(inWindow.messages, durationMs, async (n) => {
          const ws = sockets[Math.floor(Math.random() * sockets.length)];
          await pub.send(ws, { type: "publish", body: { text: `message ${n}` } });
          acked++;
        });
        const [readsMs, messagesMs] = await Promise.all([reads, messages]);
        return Math.max(readsMs, messagesMs);
      },
    });
    return {
      workload: "chat",
      description: `${spec.rooms} rooms, ${spec.members} members each connected all day with presence (${spec.rooms * spec.members} sessions), ${spec.messages.toLocaleString("en")} acknowledged WebSocket publishes and ${spec.restReads.toLocaleString("en")} REST reads of a room a day`,
      spec,
      in_window: inWindow,
      scale,
      minutes,
      ...run,
      traffic: { ...run.traffic, rest_reads_from_object: restFromObject, acked },
      day: perDay(run.setup, run.window, run.traffic, scale),
    };
  });
}

async function counter(minutes) {
  const scale = DAY_MS / (minutes * 60_000);
  const spec = { counters: 1, viewers: 500, adds: 5_000 };
  const inWindow = { adds: Math.round(spec.adds / scale) };
  const name = "page";
  return withServer(async (server) => {
    const waiting = new Map();
    const run = await twoPhases(server, {
      counters: [name],
      connect(traffic) {
        console.log(`counter: ${spec.viewers} viewers subscribing`);
        return openAll(spec.viewers, 10, () =>
          traffic.socket(`/v1/t/${TENANT}/counters/${name}/ws?format=json`, (m) => {
            if (m.type === "ack" && waiting.has(m.op_id)) waiting.get(m.op_id)();
          }),
        );
      },
      window(_traffic, sockets) {
        console.log(`counter: ${inWindow.adds} adds in ${minutes} min at the day's average rate (x${scale.toFixed(1)} for the day), each from a viewer's socket`);
        return spread(inWindow.adds, minutes * 60_000, () => {
          const ws = sockets[Math.floor(Math.random() * sockets.length)];
          const op_id = randomUUID();
          return new Promise((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error(`no ack for ${op_id}`)), 60_000);
            waiting.set(op_id, () => (clearTimeout(timer), waiting.delete(op_id), resolve()));
            ws.send(JSON.stringify({ type: "counter_add", op_id, delta: 1 }));
          });
        });
      },
    });
    const value = await (await fetch(`${server.httpUrl}/v1/t/${TENANT}/counters/${name}?consistency=strong`)).json();
    return {
      workload: "counter",
      description: `1 counter, ${spec.viewers} viewers subscribed by WebSocket all day, ${spec.adds.toLocaleString("en")} adds a day from the viewers' sockets`,
      spec,
      in_window: inWindow,
      scale,
      minutes,
      ...run,
      traffic: { ...run.traffic, final_value: value.value },
      day: perDay(run.setup, run.window, run.traffic, scale),
    };
  });
}

async function busy(busyMinutes) {
  const spec = { rooms: 1, members: 20, rate_per_s: 100, hour_minutes: 60 };
  const scale = spec.hour_minutes / busyMinutes;
  const total = Math.round(spec.rate_per_s * busyMinutes * 60);
  const room = "busy";
  return withServer(async (server) => {
    const pub = publisher();
    const run = await twoPhases(server, {
      rooms: [room],
      connect(traffic) {
        return openAll(spec.members, 10, async (i) => {
          const ws = await traffic.socket(`/v1/t/${TENANT}/rooms/${room}/ws?format=json`, (m) => pub.onMessage(m));
          ws.send(JSON.stringify({ type: "presence_set", data: { name: `user-${i}` } }));
          return ws;
        });
      },
      window(_traffic, sockets) {
        console.log(`busy: ${total} messages at ${spec.rate_per_s}/s for ${busyMinutes} min to ${spec.members} members`);
        return spread(total, busyMinutes * 60_000, (n) => pub.send(sockets[n % sockets.length], { type: "publish", body: { text: `busy ${n}` } }));
      },
    });
    return {
      workload: "busy",
      description: `1 room, ${spec.members} members with presence, ${spec.rate_per_s} messages/s for one hour of the day (the other 23 hours idle)`,
      spec,
      in_window: { messages: total },
      scale,
      minutes: busyMinutes,
      ...run,
      day: perDay(run.setup, run.window, run.traffic, scale),
    };
  });
}

// ---- report ---------------------------------------------------------------------------------

const LABELS = {
  worker_requests: "Workers requests",
  object_requests: "Durable Object requests (WebSocket messages 20:1, alarms)",
  duration_gb_s: "Durable Object duration, GB-s (estimated: 5 ms per request)",
  rows_read: "SQLite rows read",
  rows_written: "SQLite rows written",
  kv_writes: "KV writes",
  kv_reads: "KV reads",
  d1_rows_written: "D1 rows written",
  r2_class_a: "R2 class A (writes)",
  r2_class_b: "R2 class B (reads)",
  queue_ops: "Queue operations",
};

const fmt = (n) => (n >= 100 ? Math.round(n).toLocaleString("en") : n >= 1 ? n.toFixed(1) : n === 0 ? "0" : n.toFixed(3));
const pct = (share) => `${(share * 100).toFixed(share < 0.1 ? 2 : 0)} %`;
const usd = (n) => `$${n.toFixed(2)}`;

function render(results) {
  const lines = [
    "<!-- generated by bench/cost.mjs from bench/cost-results.json: do not edit by hand -->",
    "",
    `Machine: ${results.machine}. Each workload's command, date and commit are under its table.`,
    "",
  ];
  for (const run of results.runs) {
    const priced = price(run.day.units, run.prices);
    const over = priced.filter((l) => l.free_share > 1);
    lines.push(`### ${run.workload}: ${run.description}`, "");
    const ran = `${((run.elapsed ?? run.elapsed_ms) / 60000).toFixed(1)} min`;
    lines.push(
      run.workload === "busy"
        ? `Measured: the members' connections (once), then ${ran} of the busy hour at its real rate (${fmt(run.in_window.messages)} messages); a day is the connections plus that window ×${fmt(run.scale)}.`
        : `Measured: the connections (once a day), then ${ran} of the day at its average rate (${Object.entries(run.in_window).map(([k, v]) => `${fmt(v)} ${k.replace(/([A-Z])/g, " $1").toLowerCase()}`).join(", ")}); a day is the connections plus that window ×${fmt(run.scale)}.`,
      "",
    );
    lines.push("| unit | per day, measured | free plan per day | share of free | paid plan $/month beyond included |", "|---|---:|---:|---:|---:|");
    for (const l of priced) {
      const mark = l.free_share > 1 ? " **over**" : "";
      lines.push(`| ${LABELS[l.unit] ?? l.unit} | ${fmt(l.per_day)} | ${fmt(l.free_per_day)} | ${pct(l.free_share)}${mark} | ${usd(l.paid_usd_per_month)} |`);
    }
    const total = priced.reduce((s, l) => s + l.paid_usd_per_month, 0);
    lines.push("");
    lines.push(
      over.length
        ? `**Does not fit the free plan**: ${over.map((l) => `${LABELS[l.unit] ?? l.unit} ${fmt(l.per_day)} a day, ${(l.free_share).toFixed(1)}× the allowance`).join("; ")}. Paid plan: ${usd(total)} a month beyond the included amounts (plus the $5 subscription).`
        : `**Fits every free-plan allowance.** On the paid plan: ${usd(total)} a month beyond the included amounts.`,
    );
    const w = run.window.metrics;
    const s = run.setup.metrics;
    lines.push(
      "",
      `What the service counted in the window: ${fmt(w.events ?? 0)} events, ${fmt(w.deliveries ?? 0)} deliveries, ${fmt(w.frames_in ?? 0)} frames in, ${fmt(w.frames_out ?? 0)} frames out, ${fmt(w.requests ?? 0)} requests, ${fmt(w.alarms ?? 0)} alarms, ${fmt(w.flushes_ok ?? 0)} flushes, ${fmt(w.kv_writes ?? 0)} KV writes, ${fmt(w.d1_rows_written ?? 0)} D1 rows, ${fmt(w.r2_writes ?? 0)} R2 puts, ${fmt(w.rows_written ?? 0)} SQLite rows written; in the setup: ${fmt(s.requests ?? 0)} requests, ${fmt(s.frames_in ?? 0)} frames in, ${fmt(s.alarms ?? 0)} alarms, ${fmt(s.flushes_ok ?? 0)} flushes. Workers requests sent by the runner: ${fmt(run.day.workerRequestsSent)} a day (${fmt(run.day.workerRequestsSeenByObjects)} reached an object).`,
      "",
      `Command: \`${run.command}\` (${run.date}, commit ${run.commit}).`,
      "",
    );
  }
  lines.push("Settings of every run: the defaults of `durable/src/limits.rs` (none is set by the runner):", "");
  lines.push("| setting | value |", "|---|---:|");
  for (const s of results.runs[0]?.settings ?? []) lines.push(`| \`${s.name}\` | ${s.default} |`);
  lines.push("", "<!-- end generated -->");
  return lines.join("\n");
}

function writeDoc(results) {
  const generated = render(results);
  const doc = existsSync(DOC) ? readFileSync(DOC, "utf8") : "";
  const start = doc.indexOf("<!-- generated by bench/cost.mjs");
  const end = doc.indexOf("<!-- end generated -->");
  const next = start >= 0 && end > start ? doc.slice(0, start) + generated + doc.slice(end + "<!-- end generated -->".length) : `${doc}\n${generated}\n`;
  writeFileSync(DOC, next);
}

async function main() {
  const args = parseArgs(process.argv);
  if (args.render) return writeDoc(JSON.parse(readFileSync(RESULTS, "utf8")));
  const wanted = args.workload === "all" ? ["chat", "counter", "busy"] : args.workload.split(",");
  const { execSync } = await import("node:child_process");
  const commit = execSync("git rev-parse --short HEAD", { cwd: root, encoding: "utf8" }).trim();
  const dirty = execSync("git status --porcelain --untracked-files=no", { cwd: root, encoding: "utf8" })
    .split("\n")
    .filter((line) => line.trim() && !/bench\/cost-results\.json|docs\/cost\.md/.test(line)).length
    ? "+uncommitted changes"
    : "";
  const runs = [];
  for (const workload of wanted) {
    const run = workload === "chat" ? await chat(args.minutes) : workload === "counter" ? await counter(args.minutes) : await busy(args.busyMinutes);
    run.settings = settingsTable();
    run.date = new Date().toISOString().slice(0, 10);
    run.commit = `${commit}${dirty}`;
    run.command = workload === "busy" ? `node bench/cost.mjs --workload busy --busy-minutes ${args.busyMinutes}` : `node bench/cost.mjs --workload ${workload} --minutes ${args.minutes}`;
    for (const l of price(run.day.units, run.prices)) console.log(`  ${(LABELS[l.unit] ?? l.unit).padEnd(60)} ${fmt(l.per_day).padStart(12)} / ${fmt(l.free_per_day).padStart(10)}  ${pct(l.free_share)}`);
    runs.push(run);
    // Each finished workload is written at once (a later one may fail).
    const order = ["chat", "counter", "busy"];
    // Read again now: another workload run at the same time may have written its result.
    const previous = existsSync(RESULTS) ? JSON.parse(readFileSync(RESULTS, "utf8")) : { runs: [] };
    const kept = previous.runs.filter((r) => r.scale !== undefined && !runs.some((n) => n.workload === r.workload));
    const merged = [...kept, ...runs].sort((a, b) => order.indexOf(a.workload) - order.indexOf(b.workload));
    const results = {
      machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? "cpu"}, ${Math.round(os.totalmem() / 2 ** 30)} GB, Node ${process.version}, local wrangler dev`,
      runs: merged,
    };
    writeFileSync(RESULTS, `${JSON.stringify(results, null, 1)}\n`);
    writeDoc(results);
    console.log(`wrote ${RESULTS} and ${DOC}`);
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
