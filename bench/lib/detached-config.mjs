// Wrangler configs for benchmark servers: the repository's wrangler.toml without `[build]` (the
// runner builds the Worker first; a watcher of src/ that rebuilds on a change would restart a
// server in the middle of a run), and optionally without queue consumers, for measuring what
// event export costs the room itself. Locally one workerd runs the room, the queue and its
// consumer on one thread, so the consumer's work (endpoint lookup, signing, POST) delays the
// room's; deployed, the consumer is a separate invocation. Without a consumer the room still does
// all its export work (outbox, batches, queue sends) and the local queue keeps the batches.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** The config without consumers, in the repository root so its relative paths hold (git-ignored). */
export const DETACHED_CONFIG = "wrangler.export-bench.toml";
/** The config with consumers (the repository's, minus `[build]`; git-ignored). */
export const BENCH_CONFIG = "wrangler.bench.toml";

/**
 * Writes a config (the top level of wrangler.toml minus `[build]`, and minus its
 * `[[queues.consumers]]` tables unless `consumers`; the production environment left out) and
 * returns its path. The caller removes it when done.
 */
export function writeBenchConfig(root, { consumers }) {
  const path = join(root, consumers ? BENCH_CONFIG : DETACHED_CONFIG);
  const dropped = consumers ? ["[build]"] : ["[[queues.consumers]]", "[build]"];
  const kept = [];
  let skipping = false;
  for (const line of readFileSync(join(root, "wrangler.toml"), "utf8").split("\n")) {
    if (line.startsWith("[env.")) break;
    if (line.startsWith("[")) skipping = dropped.includes(line.trim());
    if (!skipping) kept.push(line);
  }
  writeFileSync(path, kept.join("\n"));
  return path;
}

/** [`writeBenchConfig`] without consumers. */
export function writeDetachedConfig(root) {
  return writeBenchConfig(root, { consumers: false });
}
