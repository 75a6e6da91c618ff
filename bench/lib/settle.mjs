// Waiting for a quiet machine between benchmark runs.
//
// A run leaves work behind in the servers: its rooms flush snapshots on their alarms (the idle
// snapshot two minutes later, 200 of them after the many-rooms scenario), sockets close, the
// peer's objects are evicted. On a 2-core machine that work lands on whichever run comes next;
// waiting for it to end keeps one scenario's aftermath out of the next one's numbers.

import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

/** Busy and total CPU time of the whole machine so far, in ticks (from /proc/stat). */
function machineTicks() {
  const first = readFileSync("/proc/stat", "utf8").split("\n", 1)[0];
  // "cpu  user nice system idle iowait irq softirq steal guest guest_nice"
  const fields = first.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = fields.reduce((a, b) => a + b, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { busy: total - idle, total };
}

/** The share of the machine's CPU (0–1, all cores) in use over the next `ms`. */
async function busyShare(ms) {
  const a = machineTicks();
  await sleep(ms);
  const b = machineTicks();
  const total = b.total - a.total;
  return total > 0 ? (b.busy - a.busy) / total : 0;
}

/**
 * Waits until the machine's CPU use over a `windowMs` window falls below `below` (a share of all
 * cores), at most `maxMs`. Resolves to what it saw: `waited_ms`, `first` (the share in the first
 * window) and `last` (in the window that ended the wait), so a report can show how busy the
 * machine was when a run began.
 */
export async function settle({ windowMs = 500, below = 0.05, maxMs = 20_000 } = {}) {
  const started = Date.now();
  const first = await busyShare(windowMs);
  let last = first;
  while (last >= below && Date.now() - started < maxMs) last = await busyShare(windowMs);
  return { waited_ms: Date.now() - started, first: round3(first), last: round3(last), quiet: last < below };
}

const round3 = (x) => Math.round(x * 1000) / 1000;
