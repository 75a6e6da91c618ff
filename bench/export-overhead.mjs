#!/usr/bin/env node
// Does event export slow the WebSocket path? Runs the same `edgeroom load` against rooms of a
// tenant with a webhook endpoint (every message exported through the queue to a loopback
// receiver) and of a tenant without one, alternating in rounds, and writes
// bench/export-results.md and bench/export-results.json.
//
// Locally one workerd runs everything on one thread: the room, the queue and its consumer (which
// looks up the endpoints, signs and POSTs every batch). Deployed, the consumer is a separate
// invocation that never holds the room's thread. So export on runs twice: on a server whose queue
// has no consumer (what the room itself does for export: outbox, batches, queue sends) and on the
// repository's config (consumer in the same runtime, every event checked at the receiver).
//
// Locally the queue itself (the simulator that stores each batch) also runs on the room's thread;
// deployed it is a separate service. `--room-share` adds a fourth variant that measures the room's
// own export work without it: the Worker is built with the test-only fault injection and the
// room's `discard_queue` fault encodes every batch and drops it as if the queue took it.
//
//   node bench/export-overhead.mjs [--rounds 4] [--seconds 10] [--state /dev/shm] [--room-share]
//                                  [--subscribers 20] [--rate 500] [--out bench/export-results]
//
// Needs the release CLI (cargo build --release -p edgeroom-client; built here if missing).
import { spawnSync } from "node:child_process";
import { createServer } from "node:http";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join, resolve } from "node:path";
import { Server, root } from "../tests/js/server.mjs";
import { writeDetachedConfig } from "./lib/detached-config.mjs";

const args = Object.fromEntries(
  process.argv
    .slice(2)
    .reduce((pairs, arg, i, all) => (arg.startsWith("--") ? [...pairs, [arg.slice(2), all[i + 1]?.startsWith("--") ? "" : all[i + 1]]] : pairs), []),
);
const roomShare = "room-share" in args;
const rounds = Number(args.rounds ?? 4);
const seconds = Number(args.seconds ?? 10);
const stateParent = args.state ?? "/dev/shm";
const ADMIN_KEY = "export-bench-admin-key-0123456789";
const cli = join(root, "target/release/edgeroom");

const subscribers = String(args.subscribers ?? 20);
const rate = String(args.rate ?? 500);
// Where the report goes: <out>.md and <out>.json.
const out = args.out ?? "bench/export-results";

// The scenarios: light load (latency) and saturation (throughput), with the same subscribers.
const scenarios = [
  { name: `${rate} msg/s, ${subscribers} subscribers`, load: ["--subscribers", subscribers, "--publishers", "2", "--rate", rate] },
  { name: `saturation (2 publishers, window 10), ${subscribers} subscribers`, load: ["--subscribers", subscribers, "--publishers", "2", "--window", "10"] },
];

// What is compared: the tenant (with or without a webhook) and the server it runs on.
const variants = [
  { id: "off", label: "off", tenant: "exportoff", server: "detached" },
  { id: "on-detached", label: "on, consumer elsewhere", tenant: "exporton", server: "detached" },
  { id: "on-same", label: "on, consumer in this workerd", tenant: "exporton", server: "same" },
  ...(roomShare ? [{ id: "on-discarded", label: "on, sends discarded", tenant: "exporton", server: "detached", faults: ["discard_queue"] }] : []),
];

function log(line) {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);
}

if (!existsSync(cli)) {
  log("building the release CLI");
  const built = spawnSync("cargo", ["build", "--release", "-p", "edgeroom-client"], { cwd: root, stdio: "inherit" });
  if (built.status !== 0) process.exit(1);
}

// The webhook receiver: answers 200 and counts the events it was given.
let exported = 0;
const receiver = createServer((req, res) => {
  let body = "";
  req.on("data", (chunk) => (body += chunk));
  req.on("end", () => {
    try {
      exported += JSON.parse(body).events?.length ?? 0;
    } catch {
      // A malformed delivery would show as fewer exported events.
    }
    res.writeHead(200).end("ok");
  });
});
await new Promise((resolve) => receiver.listen(0, "127.0.0.1", resolve));
const receiverUrl = `http://127.0.0.1:${receiver.address().port}/hooks`;

// The servers' state folders are made under TMPDIR: tmpfs by default, so SQLite syncs don't bound them.
process.env.TMPDIR = stateParent;
const vars = { ADMIN_KEY, RATE_LIMIT_PER_SEC: "100000", RATE_LIMIT_BURST: "100000" };
if (roomShare) {
  // The fault switch exists only in the test build (Server.start builds it unless EDGEROOM_PREBUILT=1).
  process.env.EDGEROOM_FAULT_INJECTION = "1";
  vars.ALLOW_FAULT_INJECTION = "yes";
}
const detachedPath = writeDetachedConfig(root);
const servers = {
  detached: await Server.start({ vars, config: detachedPath }),
  same: await Server.start({ vars }),
};
for (const [name, server] of Object.entries(servers)) {
  server.base = `http://127.0.0.1:${server.port}`;
  log(`${name}: wrangler dev on ${server.base} (state ${server.state}); receiver ${receiverUrl}`);
}

async function admin(server, path, body) {
  const response = await fetch(`${server.base}${path}`, {
    method: body ? "POST" : "GET",
    headers: { authorization: `Bearer ${ADMIN_KEY}`, "content-type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
  return response.json();
}

for (const server of Object.values(servers)) {
  await admin(server, "/v1/admin/t/exporton/webhooks/create", {
    url: receiverUrl,
    secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    kinds: ["message"],
  });
}

function cliRun(server, argv) {
  const result = spawnSync(cli, ["--url", server.base, ...argv], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  if (result.status !== 0) throw new Error(`edgeroom ${argv.join(" ")}: ${result.stderr}`);
  return result.stdout;
}

/** A room whose first alarm (one flush interval, 5 s by default) has loaded its export filter. */
async function warmRoom(server, tenant, room) {
  cliRun(server, ["publish", `${tenant}/${room}`, '"warm-up"']);
  await new Promise((resolve) => setTimeout(resolve, 6000));
}

const runs = [];
// The servers stop however the runs end (an error must not leave workerd processes behind).
try {
  for (const scenario of scenarios) {
    for (let round = 0; round < rounds; round++) {
      // Rotate which variant goes first.
      const order = variants.map((_, i) => variants[(i + round) % variants.length]);
      for (const variant of order) {
        const server = servers[variant.server];
        const room = `r${runs.length}`;
        if (variant.faults) await admin(server, `/v1/admin/t/${variant.tenant}/rooms/${room}/faults`, { fail: variant.faults });
        await warmRoom(server, variant.tenant, room);
        const before = exported;
        const out = cliRun(server, ["load", `${variant.tenant}/${room}`, ...scenario.load, "--duration", `${seconds}s`, "--json"]);
        const result = JSON.parse(out);
        // How long after the load the last acknowledged message reaches the receiver (at most 60 s).
        const ended = Date.now();
        const wanted = variant.id === "on-same" ? result.acked : 0;
        while (exported - before < wanted && Date.now() - ended < 60_000) {
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        const drainMs = Date.now() - ended;
        runs.push({ scenario: scenario.name, variant: variant.id, round, result, exported: exported - before, drainMs });
        log(`${scenario.name} | export ${variant.label} | ${Math.round(result.delivered_per_s)} ev/s | p50 ${result.latency_ms.p50} ms | p99 ${result.latency_ms.p99} ms | exported ${exported - before}/${result.acked} (+${drainMs} ms)`);
      }
    }
  }
} finally {
  for (const server of Object.values(servers)) await server.dispose();
  rmSync(detachedPath, { force: true });
  receiver.close();
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
const cell = (values, digits) =>
  `${median(values).toFixed(digits)} [${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)}]`;
const version = (pkg) => JSON.parse(readFileSync(join(root, "node_modules", pkg, "package.json"), "utf8")).version;

const lines = [
  "# Event export: WebSocket path with export on and off",
  "",
  `Generated by \`node bench/export-overhead.mjs ${process.argv.slice(2).join(" ")}\` — do not edit by hand.`,
  "",
  `- Date: ${new Date().toISOString().slice(0, 10)}; machine: ${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, ${Math.round(totalmem() / 2 ** 30)} GiB; local state on ${stateParent}.`,
  `- wrangler ${version("wrangler")} (local workerd), ${roomShare ? "the test build of the Worker (fault injection, for the discarding variant)" : "the release Worker"}, \`edgeroom load\` (Rust SDK) as the load generator, ${seconds} s per run, ${rounds} rounds rotating the order.`,
  "- Export on: tenant `exporton` has a webhook endpoint for `message` events on a loopback receiver that answers 200. Export off: tenant `exportoff` has none.",
  "- **on, consumer elsewhere**: a server whose queue has no consumer (the repository's config without `[[queues.consumers]]`): the room does all its export work (outbox, batches of 100, queue sends) and the local queue keeps the batches. This is the WebSocket path as deployed, where the consumer is a separate invocation. **on, consumer in this workerd**: the repository's config; locally workerd runs the room, the queue and the consumer (endpoint lookup, signing, POST) on one thread, so the consumer's work delays the room's; every event is checked at the receiver here. **off** runs on the first server.",
  ...(roomShare ? ["- **on, sends discarded** (`--room-share`): on the server without a consumer, the room's `discard_queue` fault (test build) encodes every batch and drops it instead of sending it: the room's own export work without the local queue simulator's."] : []),
  "- Latency is publish (scheduled send time) → receive at each subscriber; cells are median [min–max] over rounds.",
  "- Exported / acknowledged: events the receiver got per acknowledged publish (1.000 = all; more would be at-least-once repeats); drained: time from the end of the load until the receiver had them all.",
  "",
  "| scenario | export | delivered events/s | p50 ms | p99 ms | p99.9 ms | exported / acknowledged | export drained after load (ms) |",
  "|---|---|---|---|---|---|---|---|",
];
const summary = [];
for (const scenario of scenarios) {
  const stats = {};
  for (const variant of variants) {
    const these = runs.filter((run) => run.scenario === scenario.name && run.variant === variant.id);
    const pick = (f) => these.map(f);
    const checked = variant.id === "on-same";
    stats[variant.id] = {
      rate: median(pick((r) => r.result.delivered_per_s)),
      p50: median(pick((r) => r.result.latency_ms.p50)),
      p99: median(pick((r) => r.result.latency_ms.p99)),
    };
    lines.push(
      `| ${scenario.name} | ${variant.label} | ${cell(pick((r) => r.result.delivered_per_s), 0)} | ${cell(pick((r) => r.result.latency_ms.p50), 2)} | ${cell(pick((r) => r.result.latency_ms.p99), 2)} | ${cell(pick((r) => r.result.latency_ms.p999), 2)} | ${checked ? cell(pick((r) => r.exported / r.result.acked), 3) : "–"} | ${checked ? cell(pick((r) => r.drainMs), 0) : "–"} |`,
    );
  }
  for (const variant of variants.filter((v) => v.id !== "off")) {
    const on = stats[variant.id];
    const off = stats.off;
    summary.push(
      `- ${scenario.name}, export ${variant.label} / off: ${(on.rate / off.rate).toFixed(2)}× delivered events/s, ${(on.p50 / off.p50).toFixed(2)}× p50, ${(on.p99 / off.p99).toFixed(2)}× p99 (medians).`,
    );
  }
}
lines.push("", "Ratios (same run):", "", ...summary, "");
writeFileSync(resolve(root, `${out}.md`), lines.join("\n"));
writeFileSync(resolve(root, `${out}.json`), JSON.stringify({ seconds, rounds, stateParent, variants, runs }, null, 2));
log(`wrote ${out}.md and ${out}.json`);
