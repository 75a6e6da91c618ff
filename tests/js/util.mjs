// Small helpers shared by the Node tests.
import assert from "node:assert/strict";

/** Waits until `check()` is truthy (polling), or fails with `what`. */
export async function waitFor(check, what, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Resolves with the next `type` event of `emitter` (an @edgeroom/client Room or Counter). */
export function next(emitter, type, filter = () => true, timeoutMs = 20_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out waiting for a ${type} event`));
    }, timeoutMs);
    const off = emitter.on(type, (payload) => {
      if (!filter(payload)) return;
      clearTimeout(timer);
      off();
      resolve(payload);
    });
  });
}

/** Records every message event's seq and body, and every error, of a room. */
export function record(room) {
  const seen = { seqs: [], bodies: [], errors: [], statuses: [] };
  room.on("event", (event) => seen.seqs.push(event.seq));
  room.on("message", (event) => seen.bodies.push(event.body));
  room.on("error", (error) => seen.errors.push(error));
  room.on("status", (status) => seen.statuses.push(status));
  return seen;
}

/** Asserts `seqs` is exactly from..to, each once, in order. */
export function assertContiguous(seqs, from, to) {
  const expected = Array.from({ length: to - from + 1 }, (_, i) => from + i);
  assert.deepEqual(seqs, expected);
}
