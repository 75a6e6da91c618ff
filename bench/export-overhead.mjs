#!/usr/bin/env node
// Does event export slow the WebSocket path? Runs the same `edgeroom load` against rooms of a
// tenant with a webhook endpoint (every message exported through the queue to a loopback
// receiver) and of a tenant without one, alternating in rounds on one local `wrangler dev`, and
// writes bench/export-results.md and bench/export-results.json.
//
//   node bench/export-overhead.mjs [--rounds 4] [--seconds 10] [--state /dev/shm]
//
// Needs the release CLI (cargo build --release -p edgeroom-client; built here if missing).
import { spawnSync } from "node:child_process";
import { createServer } from "node:http";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { Server, root } from "../tests/js/server.mjs";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => (arg.startsWith("--") ? [...pairs, [arg.slice(2), all[i + 1]]] : pairs), []),
);
const rounds = Number(args.rounds ?? 4);
const seconds = Number(args.seconds ?? 10);
const stateParent = args.state ?? "/dev/shm";
const ADMIN_KEY = "export-bench-admin-key-0123456789";
const cli = join(root, "target/release/edgeroom");

// The scenarios: light load (latency) and saturation (throughput), both with 20 subscribers.
const scenarios = [
  { name: "500 msg/s, 20 subscribers", load: ["--subscribers", "20", "--publishers", "2", "--rate", "500"] },
  { name: "saturation (2 publishers, window 10), 20 subscribers", load: ["--subscribers", "20", "--publishers", "2", "--window", "10"] },
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

// The server's state folder is made under TMPDIR: tmpfs by default, so SQLite syncs don't bound it.
process.env.TMPDIR = stateParent;
const server = await Server.start({
  vars: {
    ADMIN_KEY,
    RATE_LIMIT_PER_SEC: "100000",
    RATE_LIMIT_BURST: "100000",
  },
});
const base = `http://127.0.0.1:${server.port}`;
log(`wrangler dev on ${base} (state ${server.state}); receiver ${receiverUrl}`);

async function admin(path, body) {
  const response = await fetch(`${base}${path}`, {
    method: body ? "POST" : "GET",
    headers: { authorization: `Bearer ${ADMIN_KEY}`, "content-type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
  return response.json();
}

await admin("/v1/admin/t/exporton/webhooks/create", {
  url: receiverUrl,
  secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
  kinds: ["message"],
});

function cliRun(argv) {
  const result = spawnSync(cli, ["--url", base, ...argv], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  if (result.status !== 0) throw new Error(`edgeroom ${argv.join(" ")}: ${result.stderr}`);
  return result.stdout;
}

/** A room whose first alarm (one flush interval, 5 s by default) has loaded its export filter. */
async function warmRoom(tenant, room) {
  cliRun(["publish", `${tenant}/${room}`, '"warm-up"']);
  await new Promise((resolve) => setTimeout(resolve, 6000));
}

const runs = [];
for (const scenario of scenarios) {
  for (let round = 0; round < rounds; round++) {
    // Alternate which variant goes first.
    const order = round % 2 === 0 ? ["exportoff", "exporton"] : ["exporton", "exportoff"];
    for (const tenant of order) {
      const room = `r${runs.length}`;
      await warmRoom(tenant, room);
      const before = exported;
      const out = cliRun(["load", `${tenant}/${room}`, ...scenario.load, "--duration", `${seconds}s`, "--json"]);
      const result = JSON.parse(out);
      // How long after the load the last acknowledged message reaches the receiver (at most 60 s).
      const ended = Date.now();
      const wanted = tenant === "exporton" ? result.acked : 0;
      while (exported - before < wanted && Date.now() - ended < 60_000) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const drainMs = Date.now() - ended;
      runs.push({ scenario: scenario.name, export: tenant === "exporton", round, result, exported: exported - before, drainMs });
      log(`${scenario.name} | export ${tenant === "exporton" ? "on " : "off"} | ${Math.round(result.delivered_per_s)} ev/s | p50 ${result.latency_ms.p50} ms | p99 ${result.latency_ms.p99} ms | exported ${exported - before}/${result.acked} (+${drainMs} ms)`);
    }
  }
}
await server.dispose();
receiver.close();

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
  "Generated by `node bench/export-overhead.mjs` — do not edit by hand.",
  "",
  `- Date: ${new Date().toISOString().slice(0, 10)}; machine: ${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, ${Math.round(totalmem() / 2 ** 30)} GiB; local state on ${stateParent}.`,
  `- wrangler ${version("wrangler")} (local workerd), the release Worker, \`edgeroom load\` (Rust SDK) as the load generator, ${seconds} s per run, ${rounds} rounds alternating the order.`,
  "- Export on: tenant `exporton` has a webhook endpoint for `message` events on a loopback receiver that answers 200; every message goes room → queue → consumer → POST. Export off: tenant `exportoff` has none.",
  "- Latency is publish (scheduled send time) → receive at each subscriber; cells are median [min–max] over rounds.",
  "- Exported / acknowledged: events the receiver got per acknowledged publish (1.000 = all; more would be at-least-once repeats); drained: time from the end of the load until the receiver had them all.",
  "",
  "| scenario | export | delivered events/s | p50 ms | p99 ms | p99.9 ms | exported / acknowledged | export drained after load (ms) |",
  "|---|---|---|---|---|---|---|---|",
];
const summary = [];
for (const scenario of scenarios) {
  const stats = {};
  for (const on of [false, true]) {
    const these = runs.filter((run) => run.scenario === scenario.name && run.export === on);
    const pick = (f) => these.map(f);
    stats[on] = {
      rate: median(pick((r) => r.result.delivered_per_s)),
      p50: median(pick((r) => r.result.latency_ms.p50)),
      p99: median(pick((r) => r.result.latency_ms.p99)),
    };
    lines.push(
      `| ${scenario.name} | ${on ? "on" : "off"} | ${cell(pick((r) => r.result.delivered_per_s), 0)} | ${cell(pick((r) => r.result.latency_ms.p50), 2)} | ${cell(pick((r) => r.result.latency_ms.p99), 2)} | ${cell(pick((r) => r.result.latency_ms.p999), 2)} | ${on ? cell(pick((r) => r.exported / r.result.acked), 3) : "–"} | ${on ? cell(pick((r) => r.drainMs), 0) : "–"} |`,
    );
  }
  summary.push(
    `- ${scenario.name}: export on / off = ${(stats[true].rate / stats[false].rate).toFixed(2)}× delivered events/s, ${(stats[true].p50 / stats[false].p50).toFixed(2)}× p50, ${(stats[true].p99 / stats[false].p99).toFixed(2)}× p99 (medians).`,
  );
}
lines.push("", "Ratios (same run):", "", ...summary, "");
writeFileSync(join(root, "bench/export-results.md"), lines.join("\n"));
writeFileSync(join(root, "bench/export-results.json"), JSON.stringify({ seconds, rounds, stateParent, runs }, null, 2));
log("wrote bench/export-results.md and bench/export-results.json");
