// Wrangler configs for benchmark servers: the repository's wrangler.toml, or the split deploy's
// three configs (deploy/*.toml, what bench/run.sh measures), without `[build]` (the
// runner builds the Worker first; a watcher of src/ that rebuilds on a change would restart a
// server in the middle of a run), and optionally without queue consumers, for measuring what
// event export costs the room itself. Locally one workerd runs the room, the queue and its
// consumer on one thread, so the consumer's work (endpoint lookup, signing, POST) delays the
// room's; deployed, the consumer is a separate invocation. Without a consumer the room still does
// all its export work (outbox, batches, queue sends) and the local queue keeps the batches.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** wrangler.toml without consumers, in the repository root so its relative paths hold (git-ignored). */
export const DETACHED_CONFIG = "wrangler.export-bench.toml";
/** The split deploy's configs (docs/deploy.md), the router first: wrangler dev serves its HTTP. */
const SPLIT_CONFIGS = ["deploy/router.toml", "deploy/rooms.toml", "deploy/counters.toml"];

/**
 * A config's top level minus `[build]`, and minus its `[[queues.consumers]]` tables unless
 * `consumers`, with `vars` set in its `[vars]` (the production environment left out).
 */
function benchConfigText(text, { consumers, vars = {} }) {
  const dropped = consumers ? ["[build]"] : ["[[queues.consumers]]", "[build]"];
  const kept = [];
  let skipping = false;
  let inVars = false;
  for (const line of text.split("\n")) {
    if (line.startsWith("[env.")) break;
    if (line.startsWith("[")) {
      skipping = dropped.includes(line.trim());
      inVars = line.trim() === "[vars]";
      if (inVars) {
        kept.push(line, ...Object.entries(vars).map(([name, value]) => `${name} = ${JSON.stringify(String(value))}`));
        continue;
      }
    }
    // A var set here replaces the config's own line for it.
    if (inVars && Object.hasOwn(vars, line.split("=")[0].trim())) continue;
    if (!skipping) kept.push(line);
  }
  return kept.join("\n");
}

/**
 * Writes wrangler.toml's top level minus `[build]` and its queue consumers (bench/export-overhead.mjs)
 * and returns its path. The caller removes it when done.
 */
export function writeDetachedConfig(root) {
  const path = join(root, DETACHED_CONFIG);
  writeFileSync(path, benchConfigText(readFileSync(join(root, "wrangler.toml"), "utf8"), { consumers: false }));
  return path;
}

/**
 * Writes bench copies of the split deploy's three configs next to them (so their relative paths
 * hold; git-ignored), minus `[build]` and, unless `consumers`, the queue consumers, with `vars` in every Worker's `[vars]`:
 * `--var` reaches only the first config's Worker, and the room limits are the rooms Worker's.
 * Returns wrangler dev's config arguments and the files written (the caller removes them).
 */
export function writeSplitBenchConfigs(root, { consumers, vars }) {
  const suffix = consumers ? "bench" : "export-bench";
  const files = SPLIT_CONFIGS.map((config) => config.replace(/\.toml$/, `.${suffix}.toml`));
  SPLIT_CONFIGS.forEach((config, i) => {
    writeFileSync(join(root, files[i]), benchConfigText(readFileSync(join(root, config), "utf8"), { consumers, vars }));
  });
  return { configArgs: files.flatMap((file) => ["-c", file]), files };
}
