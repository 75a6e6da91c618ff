// The repository's wrangler config without queue consumers, for measuring what event export
// costs the room itself. Locally one workerd runs the room, the queue and its consumer on one
// thread, so the consumer's work (endpoint lookup, signing, POST) delays the room's; deployed,
// the consumer is a separate invocation. Without a consumer the room still does all its export
// work (outbox, batches, queue sends) and the local queue keeps the batches.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** The file name, in the repository root so the config's relative paths hold (git-ignored). */
export const DETACHED_CONFIG = "wrangler.export-bench.toml";

/**
 * Writes the config (the top level of wrangler.toml minus its `[[queues.consumers]]` tables and
 * `[build]`; the production environment left out) and returns its path. The caller removes it when done.
 */
export function writeDetachedConfig(root) {
  const path = join(root, DETACHED_CONFIG);
  const kept = [];
  let skipping = false;
  for (const line of readFileSync(join(root, "wrangler.toml"), "utf8").split("\n")) {
    if (line.startsWith("[env.")) break;
    // No [build] either: the Worker is built, and a second watcher of src/ that rebuilds on a
    // change would restart this server in the middle of a run.
    if (line.startsWith("[")) skipping = ["[[queues.consumers]]", "[build]"].includes(line.trim());
    if (!skipping) kept.push(line);
  }
  writeFileSync(path, kept.join("\n"));
  return path;
}
