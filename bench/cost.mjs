#!/usr/bin/env node
// The cost model of a day, measured: runs each workload against a local `wrangler dev` in
// compressed time (a day of traffic in --minutes, every time-based setting divided by the same
// factor), reads what the service counted about itself (admin API: room and counter metrics),
// prices it with the service's own table (durable/src/pricing.rs, through the admin API's cost
// lines) and writes bench/cost-results.json and the generated section of docs/cost.md.
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

// Time-based settings divided by the compression factor (defaults are read from
// durable/src/limits.rs, so a new setting is one line here).
const SCALED = [
  { name: "FLUSH_INTERVAL_MS" },
  { name: "MIN_FLUSH_INTERVAL_MS" },
  { name: "HISTORY_MAX_AGE_MS" },
  { name: "OP_DEDUP_WINDOW_MS" },
  { name: "SNAPSHOT_INTERVAL_MS" },
  { name: "IDLE_SNAPSHOT_MS" },
  { name: "READ_MODEL_WINDOW_MS" },
  { name: "READ_MODEL_INTERVAL_MS" },
  // KV refuses a time to live under 60 s, locally too: this one cannot shrink below it.
  { name: "READ_MODEL_TTL_S", floor: 60 },
];
// Time-based settings left at their defaults, and why.
const UNSCALED = {
  BATCH_DELAY_MS: "a few milliseconds of coalescing: a latency setting, not a cadence of billed work",
  PRESENCE_INTERVAL_MS: "presence merge window (50 ms): same",
  ABUSE_WINDOW_MS: "abuse detection window: bills nothing",
  HEARTBEAT_TIMEOUT_MS:
    "clients would have to ping as many times faster; the sweep alarms it drives are measured at real time and scaled by the factor instead",
};

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

/** The wrangler vars of a run compressed by `factor`, and the table of what was scaled. */
function scaledVars(factor) {
  const defaults = limitDefaults();
  const vars = {};
  const table = [];
  for (const { name, floor = 1 } of SCALED) {
    if (!(name in defaults)) continue; // not in this version of the service
    const value = Math.max(floor, Math.round(defaults[name] / factor));
    if (factor !== 1) vars[name] = String(value);
    table.push({ name, default: defaults[name], run: factor === 1 ? defaults[name] : value });
  }
  const unclassified = Object.keys(defaults).filter((n) => /_(MS|S)$/.test(n) && !SCALED.some((s) => s.name === n) && !(n in UNSCALED));
  if (unclassified.length) console.warn(`warning: time settings neither scaled nor listed as unscaled: ${unclassified.join(", ")}`);
  return { vars, table };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Counts what the runner sends through the router: every HTTP request and WebSocket upgrade. */
class Traffic {
  workerRequests = 0;
  kvReads = 0;
  restReadsFromObject = 0;
  constructor(server) {
    this.server = server;
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

/** Waits for the objects' own last flush (no forced flush: it would bill a flush of its own). */
async function settle(flushMs) {
  await sleep(Math.max(3_000, 3 * flushMs));
}

/** Sums the metrics and units of the rooms and counters, minus the metrics reads themselves. */
async function measure(server, rooms, counters) {
  const metrics = {};
  const units = {};
  const add = (into, from) => {
    for (const [k, v] of Object.entries(from)) if (typeof v === "number") into[k] = (into[k] ?? 0) + v;
  };
  for (const room of rooms) {
    const live = (await admin(server, `/v1/admin/t/${TENANT}/rooms/${room}/metrics?window_ms=86400000`)).live;
    // The read itself: one request through the router (counted in requests and worker_requests).
    live.metrics.requests -= 1;
    live.metrics.worker_requests -= 1;
    live.units.object_requests -= 1;
    live.units.worker_requests -= 1;
    add(metrics, live.metrics);
    add(units, live.units);
  }
  for (const counter of counters) {
    const live = (await admin(server, `/v1/admin/t/${TENANT}/counters/${counter}/metrics?window_ms=86400000`)).live;
    // The read itself: the home's state and metrics (two object requests, not routed writes).
    live.metrics.requests -= 2;
    live.units.object_requests -= 2;
    add(metrics, live.metrics);
    add(units, live.units);
  }
  const overview = await admin(server, `/v1/admin/t/${TENANT}`);
  const prices = overview.cost.estimate.lines.map((line) => line.price);
  return { metrics, units, prices };
}

/**
 * Per-day units: the run's, plus the silent-socket sweeps that compression left out. Sweeps run
 * every HEARTBEAT_TIMEOUT_MS / 2 of real time (not scaled: clients would have to ping faster)
 * in each object with connected sockets, so a day holds `factor` times the run's; the other
 * alarms (the cadence's checks) ran compressed and count as measured. An upper bound: in a real
 * day a sweep and a check can share one alarm.
 */
function perDay(measured, traffic, factor, connectedObjects, elapsedMs) {
  const units = { ...measured.units };
  const sweepMs = Math.max(1000, limitDefaults().HEARTBEAT_TIMEOUT_MS / 2);
  const sweeps = connectedObjects * Math.floor(elapsedMs / sweepMs);
  const extraSweeps = sweeps * (factor - 1);
  units.object_requests += extraSweeps;
  units.duration_gb_s += (extraSweeps * 5 / 1000) * 0.128;
  // What no object sees: requests the router answered alone (KV reads) and the KV reads.
  const objectSeen = units.worker_requests;
  units.worker_requests = Math.max(traffic.workerRequests, objectSeen);
  units.kv_reads = traffic.kvReads;
  return { units, sweeps, extraSweeps, workerRequestsSeenByObjects: objectSeen };
}

function price(units, prices, scale = 1) {
  return prices.map((p) => {
    const perDay = (units[p.unit] ?? 0) * scale;
    const paid = (Math.max(0, perDay * 30 - p.paid_included_per_month) / 1e6) * p.paid_usd_per_million;
    return { unit: p.unit, per_day: perDay, free_per_day: p.free_per_day, free_share: perDay / p.free_per_day, paid_usd_per_month: paid };
  });
}

async function withServer(vars, run) {
  const server = await Server.start({ vars: { ADMIN_KEY, ...vars } });
  try {
    return await run(server);
  } finally {
    await server.dispose();
  }
}

// ---- workloads ------------------------------------------------------------------------------

async function chat(minutes) {
  const factor = DAY_MS / (minutes * 60_000);
  const { vars, table } = scaledVars(factor);
  const spec = { rooms: 50, members: 20, messages: 200_000, restReads: 10_000 };
  return withServer(vars, async (server) => {
    const traffic = new Traffic(server);
    const rooms = Array.from({ length: spec.rooms }, (_, i) => `chat-${i}`);
    const pub = publisher();
    console.log(`chat: ${spec.rooms} rooms x ${spec.members} members connecting`);
    const sockets = await openAll(spec.rooms * spec.members, 20, async (i) => {
      const room = rooms[i % spec.rooms];
      const ws = await traffic.socket(`/v1/t/${TENANT}/rooms/${room}/ws?format=json`, (m) => pub.onMessage(m));
      ws.send(JSON.stringify({ type: "presence_set", data: { name: `user-${i}` } }));
      return ws;
    });
    const stop = heartbeat(sockets);
    const durationMs = minutes * 60_000;
    console.log(`chat: ${spec.messages} messages and ${spec.restReads} REST reads over ${minutes} min (x${factor.toFixed(1)})`);
    const started = Date.now();
    const reads = spread(spec.restReads, durationMs, async () => {
      const room = rooms[Math.floor(Math.random() * rooms.length)];
      const response = await traffic.fetch(`/v1/t/${TENANT}/rooms/${room}`);
      await response.arrayBuffer();
      traffic.kvReads++;
      if (response.headers.get("x-edgeroom-source") !== "kv") traffic.restReadsFromObject++;
    });
    let acked = 0;
    const messages = spread(spec.messages, durationMs, async (n) => {
      const ws = sockets[Math.floor(Math.random() * sockets.length)];
      await pub.send(ws, { type: "publish", body: { text: `message ${n}` } });
      if (++acked % 20_000 === 0) console.log(`  ${acked} acked after ${((Date.now() - started) / 1000).toFixed(0)} s`);
    });
    const [readsMs, messagesMs] = await Promise.all([reads, messages]);
    await settle(Number(vars.FLUSH_INTERVAL_MS ?? 5000));
    const measured = await measure(server, rooms, []);
    stop();
    for (const ws of sockets) ws.close();
    return {
      workload: "chat",
      description: `${spec.rooms} rooms, ${spec.members} members each connected with presence (${spec.rooms * spec.members} sessions), ${spec.messages.toLocaleString("en")} acknowledged WebSocket publishes and ${spec.restReads.toLocaleString("en")} REST reads of a room, spread over the day`,
      spec,
      factor,
      minutes,
      elapsed_ms: Math.max(readsMs, messagesMs),
      settings: table,
      traffic: { worker_requests: traffic.workerRequests, kv_reads: traffic.kvReads, rest_reads_from_object: traffic.restReadsFromObject, acked },
      ...measured,
      day: perDay(measured, traffic, factor, spec.rooms, Math.max(readsMs, messagesMs)),
    };
  });
}

async function counter(minutes) {
  const factor = DAY_MS / (minutes * 60_000);
  const { vars, table } = scaledVars(factor);
  const spec = { counters: 1, viewers: 500, adds: 5_000 };
  return withServer(vars, async (server) => {
    const traffic = new Traffic(server);
    const name = "page";
    const waiting = new Map();
    console.log(`counter: ${spec.viewers} viewers subscribing`);
    const sockets = await openAll(spec.viewers, 20, () =>
      traffic.socket(`/v1/t/${TENANT}/counters/${name}/ws?format=json`, (m) => {
        if (m.type === "ack" && waiting.has(m.op_id)) waiting.get(m.op_id)();
      }),
    );
    const stop = heartbeat(sockets);
    console.log(`counter: ${spec.adds} adds over ${minutes} min (x${factor.toFixed(1)}), each from a viewer's socket`);
    const elapsed = await spread(spec.adds, minutes * 60_000, () => {
      const ws = sockets[Math.floor(Math.random() * sockets.length)];
      const op_id = randomUUID();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ack for ${op_id}`)), 60_000);
        waiting.set(op_id, () => (clearTimeout(timer), waiting.delete(op_id), resolve()));
        ws.send(JSON.stringify({ type: "counter_add", op_id, delta: 1 }));
      });
    });
    await settle(Number(vars.FLUSH_INTERVAL_MS ?? 5000));
    const measured = await measure(server, [], [name]);
    const value = await (await fetch(`${server.httpUrl}/v1/t/${TENANT}/counters/${name}?consistency=strong`)).json();
    stop();
    for (const ws of sockets) ws.close();
    return {
      workload: "counter",
      description: `1 counter, ${spec.viewers} viewers subscribed by WebSocket, ${spec.adds.toLocaleString("en")} adds (from the viewers' sockets) spread over the day`,
      spec,
      factor,
      minutes,
      elapsed_ms: elapsed,
      settings: table,
      traffic: { worker_requests: traffic.workerRequests, kv_reads: traffic.kvReads, final_value: value.value },
      ...measured,
      day: perDay(measured, traffic, factor, spec.counters, elapsed),
    };
  });
}

async function busy(busyMinutes) {
  // Real rate, real settings, for a part of the hour; the hour is that part times 60/busyMinutes.
  const { table } = scaledVars(1);
  const spec = { rooms: 1, members: 20, rate_per_s: 100, hour_minutes: 60 };
  const scale = spec.hour_minutes / busyMinutes;
  return withServer({}, async (server) => {
    const traffic = new Traffic(server);
    const pub = publisher();
    const room = "busy";
    const sockets = await openAll(spec.members, 10, async (i) => {
      const ws = await traffic.socket(`/v1/t/${TENANT}/rooms/${room}/ws?format=json`, (m) => pub.onMessage(m));
      ws.send(JSON.stringify({ type: "presence_set", data: { name: `user-${i}` } }));
      return ws;
    });
    const stop = heartbeat(sockets);
    const total = Math.round(spec.rate_per_s * busyMinutes * 60);
    console.log(`busy: ${total} messages at ${spec.rate_per_s}/s for ${busyMinutes} min to ${spec.members} members`);
    const elapsed = await spread(total, busyMinutes * 60_000, (n) => pub.send(sockets[n % sockets.length], { type: "publish", body: { text: `busy ${n}` } }));
    await settle(5000);
    const measured = await measure(server, [room], []);
    stop();
    for (const ws of sockets) ws.close();
    // The hour: everything scales (the settings were real), so no sweep adjustment: factor 1.
    const day = perDay(measured, traffic, 1, 1, elapsed);
    for (const key of Object.keys(day.units)) day.units[key] *= scale;
    return {
      workload: "busy",
      description: `1 room, ${spec.members} members with presence, ${spec.rate_per_s} messages/s for an hour (run at the real rate for ${busyMinutes} min and multiplied by ${scale}; the rest of the day idle)`,
      spec,
      factor: 1,
      hour_scale: scale,
      minutes: busyMinutes,
      elapsed_ms: elapsed,
      settings: table,
      traffic: { worker_requests: traffic.workerRequests, kv_reads: 0, sent: total },
      ...measured,
      day,
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
  queue_ops: "Queue operations",
};

const fmt = (n) => (n >= 100 ? Math.round(n).toLocaleString("en") : n >= 1 ? n.toFixed(1) : n === 0 ? "0" : n.toFixed(3));
const pct = (share) => `${(share * 100).toFixed(share < 0.1 ? 2 : 0)} %`;
const usd = (n) => `$${n.toFixed(2)}`;

function render(results) {
  const lines = [
    "<!-- generated by bench/cost.mjs from bench/cost-results.json: do not edit by hand -->",
    "",
    `Measured ${results.date} on ${results.machine} (commit ${results.commit}), \`${results.command}\`.`,
    "",
  ];
  for (const run of results.runs) {
    const priced = price(run.day.units, run.prices);
    const over = priced.filter((l) => l.free_share > 1);
    lines.push(`### ${run.workload}: ${run.description}`, "");
    lines.push(
      run.workload === "busy"
        ? `Ran ${(run.elapsed_ms / 60000).toFixed(1)} min at the real rate with the default settings; the figures are that run times ${run.hour_scale} (one busy hour in a day).`
        : `Ran in ${(run.elapsed_ms / 60000).toFixed(1)} min (a day compressed ×${run.factor.toFixed(1)}); silent-socket sweep alarms at their real cadence (HEARTBEAT_TIMEOUT_MS / 2 per object with sockets): ${fmt(run.day.sweeps)} in the run, ${fmt(run.day.sweeps * run.factor)} a day (added to object requests; an upper bound).`,
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
    const m = run.metrics;
    lines.push(
      "",
      `What the service counted: ${fmt(m.events ?? 0)} events, ${fmt(m.deliveries ?? 0)} deliveries, ${fmt(m.frames_in ?? 0)} frames in, ${fmt(m.frames_out ?? 0)} frames out, ${fmt(m.requests ?? 0)} requests, ${fmt(m.alarms ?? 0)} alarms, ${fmt(m.flushes_ok ?? 0)} flushes; Workers requests sent by the runner ${fmt(run.traffic.worker_requests)} (${fmt(run.day.workerRequestsSeenByObjects)} reached an object).`,
      "",
    );
  }
  lines.push("Settings of the compressed runs (defaults from `durable/src/limits.rs`, divided by the factor):", "");
  const chat = results.runs.find((r) => r.workload !== "busy") ?? results.runs[0];
  lines.push("| setting | default | in the run |", "|---|---:|---:|");
  for (const s of chat.settings) lines.push(`| \`${s.name}\` | ${s.default} | ${s.run} |`);
  for (const [name, why] of Object.entries(UNSCALED)) lines.push(`| \`${name}\` | default | not scaled: ${why} |`);
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
  const previous = existsSync(RESULTS) ? JSON.parse(readFileSync(RESULTS, "utf8")) : { runs: [] };
  const wanted = args.workload === "all" ? ["chat", "counter", "busy"] : args.workload.split(",");
  const runs = [];
  for (const workload of wanted) {
    const run = workload === "chat" ? await chat(args.minutes) : workload === "counter" ? await counter(args.minutes) : await busy(args.busyMinutes);
    for (const l of price(run.day.units, run.prices)) console.log(`  ${(LABELS[l.unit] ?? l.unit).padEnd(60)} ${fmt(l.per_day).padStart(12)} / ${fmt(l.free_per_day).padStart(10)}  ${pct(l.free_share)}`);
    runs.push(run);
  }
  const order = ["chat", "counter", "busy"];
  const merged = [...previous.runs.filter((r) => !wanted.includes(r.workload)), ...runs].sort((a, b) => order.indexOf(a.workload) - order.indexOf(b.workload));
  const { execSync } = await import("node:child_process");
  const commit = execSync("git rev-parse --short HEAD", { cwd: root, encoding: "utf8" }).trim();
  const results = {
    date: new Date().toISOString().slice(0, 10),
    machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? "cpu"}, ${Math.round(os.totalmem() / 2 ** 30)} GB, Node ${process.version}, local wrangler dev`,
    commit,
    command: `node bench/cost.mjs --minutes ${args.minutes} --workload ${args.workload} --busy-minutes ${args.busyMinutes}`,
    runs: merged,
  };
  writeFileSync(RESULTS, `${JSON.stringify(results, null, 1)}\n`);
  writeDoc(results);
  console.log(`wrote ${RESULTS} and ${DOC}`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
