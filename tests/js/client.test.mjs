// @edgeroom/client in Node 20 (with `ws`) against a real `wrangler dev`.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { WebSocketServer } from "ws";
import WebSocket from "ws";
import { connectCounter, connectRoom, EdgeroomError } from "@edgeroom/client";
import { Server, freePort } from "./server.mjs";
import { assertContiguous, next, record, waitFor } from "./util.mjs";

const ADMIN_KEY = "js-test-admin-key";
const fast = { WebSocket, minReconnectDelayMs: 100, maxReconnectDelayMs: 500 };
const clients = [];
function room(server, name, options = {}) {
  const r = connectRoom({ url: server.httpUrl, tenant: "acme", room: name, ...fast, ...options });
  clients.push(r);
  return r;
}
function counter(server, name, options = {}) {
  const c = connectCounter({ url: server.httpUrl, tenant: "acme", name, ...fast, ...options });
  clients.push(c);
  return c;
}
after(() => clients.forEach((c) => c.close()));

describe("against wrangler dev", () => {
  let server;
  before(async () => {
    // A short heartbeat timeout lets the server close silent sockets in the resume test; a short
    // history (trimmed every 64 events) gives a real retention gap.
    server = await Server.start({ vars: { HEARTBEAT_TIMEOUT_MS: "2000", SWEEP_INTERVAL_MS: "1000", HISTORY_MAX_EVENTS: "10", TENANT_SECRETS: JSON.stringify({ acme: "acme-secret-0123456789" }), ADMIN_KEY } });
  });
  after(async () => server?.dispose());

  test("operations resolve on their ack and every client sees each event once, in seq order", async () => {
    const alice = room(server, "acks");
    const bob = room(server, "acks");
    const bobSeen = record(bob);
    await Promise.all([alice.whenConnected(), bob.whenConnected()]);
    const start = alice.seq;
    const acks = await Promise.all([
      ...Array.from({ length: 20 }, (_, i) => alice.publish({ text: `m${i}` }, { topic: "chat" })),
      alice.setState("title", "Planning"),
      alice.deleteState("missing"),
    ]);
    const seqs = acks.map((a) => a.seq).sort((a, b) => a - b);
    assertContiguous(seqs, start + 1, start + 22);
    acks.forEach((a) => assert.match(a.opId, /^[0-9a-f-]{36}$/));
    await waitFor(() => bob.seq === start + 22, "bob to reach the last seq");
    assertContiguous(bobSeen.seqs, start + 1, start + 22);
    assert.equal(bob.state.get("title"), "Planning");
    assert.deepEqual(bobSeen.errors, []);
    // Presence: both members, with data, and the leaver dropped.
    alice.setPresence({ name: "Alice" });
    await waitFor(() => bob.members.some((m) => m.connection_id === alice.connectionId && m.data?.name === "Alice"), "alice's presence at bob");
    assert.equal(bob.members.length, 2);
    alice.close();
    await waitFor(() => bob.members.length === 1, "alice to leave bob's member list");
  });

  test("server refusals reject the operation's promise with the server's code", async () => {
    const r = room(server, "refusals");
    await r.whenConnected();
    const tooLong = "k".repeat(300); // over STATE_MAX_KEY_BYTES (256)
    await assert.rejects(r.setState(tooLong, 1), (e) => e instanceof EdgeroomError && e.code === "bad_request" && e.opId !== null);
    // The client carries on.
    const ack = await r.publish("still here");
    await waitFor(() => r.seq === ack.seq, "the client's own event");
    assert.equal(r.status, "connected");
  });

  test("resume across a server-side close is exact", async () => {
    // The listener sends no heartbeat, so the server closes it (4010, HEARTBEAT_TIMEOUT_MS) and
    // it resumes; the writer publishes before, during (from the moment the close is seen) and after.
    const listener = room(server, "server-close", { heartbeatMs: 600_000, minReconnectDelayMs: 300 });
    const seen = record(listener);
    const writer = room(server, "server-close");
    await Promise.all([listener.whenConnected(), writer.whenConnected()]);
    const start = listener.seq;
    const acks = [];
    const off = listener.on("status", (status) => {
      if (status !== "reconnecting") return;
      off();
      for (let i = 0; i < 5; i++) acks.push(writer.publish(`during-${i}`));
    });
    for (let i = 0; i < 5; i++) acks.push(writer.publish(`before-${i}`));
    await waitFor(() => seen.statuses.includes("reconnecting"), "the server to close the silent listener", 60_000);
    await waitFor(() => listener.status === "connected", "the listener to resume");
    for (let i = 0; i < 5; i++) acks.push(writer.publish(`after-${i}`));
    await Promise.all(acks);
    await waitFor(() => seen.seqs.length === 15, "the listener to see 15 events");
    assertContiguous(seen.seqs, start + 1, start + 15);
    const expected = ["before", "during", "after"].flatMap((phase) => [0, 1, 2, 3, 4].map((i) => `${phase}-${i}`));
    assert.deepEqual(seen.bodies, expected);
    listener.close();
    writer.close();
  });

  test("a resume in another epoch surfaces a gap with the fresh state", async () => {
    const writer = room(server, "epochs");
    await writer.whenConnected();
    await writer.setState("topic", "Launch");
    await writer.publish("before");
    const stale = room(server, "epochs", { since: 1, epoch: "0000000000000000" });
    const seen = record(stale);
    const gap = await next(stale, "gap");
    assert.equal(gap.resumeFrom, 1);
    assert.equal(gap.epoch, writer.epoch);
    assert.equal(gap.state.get("topic"), "Launch");
    assert.equal(stale.seq, writer.seq);
    await writer.publish("after");
    await waitFor(() => seen.bodies.includes("after"), "the live event after the gap");
    assert.deepEqual(seen.bodies, ["after"]);
  });

  test("a resume beyond the kept history surfaces a gap with the fresh state, then live events", async () => {
    const writer = room(server, "retention");
    await writer.whenConnected();
    await writer.setState("topic", "Old");
    const since = writer.seq;
    // One at a time: events sent together share a storage row and are trimmed together, so a
    // burst could stay whole in the kept history.
    for (let i = 0; i < 80; i++) await writer.publish(i);
    await writer.setState("topic", "New");
    const late = room(server, "retention", { since, epoch: writer.epoch });
    const seen = record(late);
    const gap = await next(late, "gap");
    assert.equal(gap.resumeFrom, since);
    assert.equal(gap.seq, writer.seq);
    assert.equal(gap.state.get("topic"), "New");
    assert.equal(late.state.get("topic"), "New");
    assert.deepEqual(seen.bodies, [], "nothing from the trimmed range is delivered as if complete");
    const ack = await writer.publish("live");
    await waitFor(() => late.seq === ack.seq, "the live event after the gap");
    assert.deepEqual(seen.bodies, ["live"]);
  });

  test("tokens come from the provider before every connection attempt and carry the user's rights", async () => {
    async function mint(sub, rights) {
      const response = await fetch(`${server.httpUrl}/v1/admin/t/acme/tokens`, {
        method: "POST",
        headers: { authorization: `Bearer ${ADMIN_KEY}`, "content-type": "application/json" },
        body: JSON.stringify({ sub, rooms: [{ room: "tokens", rights }] }),
      });
      assert.equal(response.status, 200, await response.clone().text());
      return (await response.json()).token;
    }
    let calls = 0;
    const writer = room(server, "tokens", {
      token: async () => {
        calls += 1;
        return mint("ada", ["read", "write", "presence"]);
      },
    });
    const reader = room(server, "tokens", { token: await mint("bo", ["read", "presence"]) });
    await Promise.all([writer.whenConnected(), reader.whenConnected()]);
    assert.equal(calls, 1);
    // The writer learns of the reader from a presence diff (merged, so up to 50 ms later).
    await waitFor(() => writer.members.some((m) => m.user === "ada") && writer.members.some((m) => m.user === "bo"), "both members at the writer");
    await assert.rejects(reader.publish("no write right"), (e) => e instanceof EdgeroomError && e.code === "forbidden");
    writer.reconnect();
    await waitFor(() => calls === 2 && writer.status === "connected", "a second connection with a fresh token");
    const ack = await writer.publish("with a fresh token");
    await waitFor(() => reader.seq === ack.seq, "the reader to see it");
  });

  test("counters: acks carry the version and every subscriber converges", async () => {
    const a = counter(server, "likes");
    const b = counter(server, "likes");
    await Promise.all([a.whenConnected(), b.whenConnected()]);
    const results = await Promise.all(Array.from({ length: 10 }, () => a.add(1)));
    results.forEach((r) => assert.match(r.opId, /^[0-9a-f-]{36}$/));
    const versions = results.map((r) => r.version).sort((x, y) => x - y);
    assert.equal(new Set(versions).size, 10);
    await waitFor(() => a.value === 10 && b.value === 10, "both subscribers to see 10");
    assert.equal(a.version, b.version);
  });
});

test("resume across a runtime restart: buffered operations are delivered once, expired ones reported", async () => {
  const server = await Server.start();
  try {
    const listener = room(server, "restart");
    const seen = record(listener);
    const writer = room(server, "restart");
    const shortTtl = room(server, "restart", { offlineTtlMs: 300 });
    const likes = counter(server, "restart-likes");
    await Promise.all([listener.whenConnected(), writer.whenConnected(), shortTtl.whenConnected(), likes.whenConnected()]);
    const start = listener.seq;
    for (let i = 0; i < 5; i++) await writer.publish(`before-${i}`);
    await likes.add(2);

    await server.stop();
    await waitFor(() => writer.status === "reconnecting" && shortTtl.status === "reconnecting", "clients to notice the restart");
    // Made while the runtime is down: buffered, then sent with their original op ids.
    const buffered = [writer.publish("while-down-1"), writer.publish("while-down-2"), likes.add(3)];
    const expired = shortTtl.publish("too late");
    await assert.rejects(expired, (e) => e instanceof EdgeroomError && e.code === "expired" && e.maybeApplied === false);
    await server.restart();

    const [ack1, ack2, counted] = await Promise.all(buffered);
    assert.equal(ack2.seq, ack1.seq + 1);
    for (let i = 0; i < 3; i++) await writer.publish(`after-${i}`);
    await waitFor(() => seen.bodies.length === 10, "the listener to see all ten messages");
    assertContiguous(seen.seqs, start + 1, start + 10);
    assert.deepEqual(seen.bodies, [0, 1, 2, 3, 4].map((i) => `before-${i}`).concat(["while-down-1", "while-down-2"], [0, 1, 2].map((i) => `after-${i}`)));
    assert.ok(seen.statuses.includes("reconnecting"));
    await waitFor(() => likes.value === 5, "the counter to show 5");
    assert.equal(counted.version, likes.version);
    // "too late" was never sent, so it never reached the room.
    assert.ok(!seen.bodies.includes("too late"));
  } finally {
    await server.dispose();
  }
});

test("the outgoing buffer is bounded: over the bound is refused at once, never dropped", async () => {
  // Nobody listens on this port: every operation waits offline.
  const port = await freePort();
  const r = connectRoom({ url: `http://127.0.0.1:${port}`, tenant: "acme", room: "x", ...fast, maxBufferedOps: 2, offlineTtlMs: 200 });
  clients.push(r);
  const first = r.publish(1);
  const second = r.publish(2);
  await assert.rejects(r.publish(3), (e) => e.code === "buffer_full");
  await assert.rejects(first, (e) => e.code === "expired");
  await assert.rejects(second, (e) => e.code === "expired");
  r.close();
  assert.equal(r.status, "closed");
});

test("bad frames from a fake peer are reported as errors and the client keeps working", async () => {
  const port = await freePort();
  const peer = new WebSocketServer({ host: "127.0.0.1", port });
  const urls = [];
  peer.on("connection", (socket, request) => {
    urls.push(new URL(request.url, "http://x"));
    const first = urls.length === 1;
    socket.send(JSON.stringify({ type: "welcome", connection_id: urls.length, seq: 10, members: [], state: [], epoch: "e1" }));
    if (!first) {
      // A replay that overlaps what the client already has: 9 and 10 must be skipped, 11 delivered once.
      const event = (seq, body) => ({ seq, kind: "message", body, sender: 1, topic: null, key: null });
      socket.send(JSON.stringify({ type: "events", events: [event(9, "old"), event(10, "old"), event(11, "after resume")] }));
      socket.send(JSON.stringify({ type: "event", ...event(11, "after resume") }));
      socket.send(JSON.stringify({ type: "event", ...event(12, "end") }));
      return;
    }
    socket.send("this is not json");
    socket.send(JSON.stringify({ no: "type" }));
    socket.send(JSON.stringify({ type: "event", seq: "eleven", kind: "message" }));
    socket.send(JSON.stringify({ type: "mystery" }));
    socket.send(JSON.stringify({ type: "events", events: [{ seq: 11 }] }));
    socket.send(JSON.stringify({ type: "presence", joined: [{ connection_id: "x" }], left: [], updated: [] }));
    socket.send(Buffer.from([1, 2, 3]), { binary: true });
    socket.send(JSON.stringify({ type: "ack", op_id: "not-ours", seq: 3 }));
    // A hole: 11 is missing. The client must not deliver 15; it resumes from 10 instead.
    socket.send(JSON.stringify({ type: "event", seq: 15, kind: "message", body: "hole", sender: 1, topic: null, key: null }));
  });
  await new Promise((r) => peer.once("listening", r));
  const uncaught = [];
  const onUncaught = (e) => uncaught.push(e);
  process.on("uncaughtException", onUncaught);
  try {
    const r = connectRoom({ url: `http://127.0.0.1:${port}`, tenant: "acme", room: "fake", ...fast });
    clients.push(r);
    const seen = record(r);
    await waitFor(() => seen.bodies.includes("end"), "the events after the resume");
    assert.deepEqual(seen.bodies, ["after resume", "end"]);
    assert.deepEqual(seen.seqs, [11, 12]);
    const codes = seen.errors.map((e) => e.code);
    assert.deepEqual(codes, ["protocol_error", "protocol_error", "protocol_error", "protocol_error", "protocol_error", "protocol_error", "protocol_error", "unknown_ack", "sequence_hole"]);
    assert.ok(seen.errors.every((e) => e instanceof EdgeroomError && e.message.length > 0));
    // The second connection resumed from the last good seq in the welcome's epoch.
    assert.equal(urls[1].searchParams.get("resume_from"), "10");
    assert.equal(urls[1].searchParams.get("epoch"), "e1");
    assert.equal(r.status, "connected");
    assert.deepEqual(uncaught, []);
    r.close();
  } finally {
    process.off("uncaughtException", onUncaught);
    await new Promise((r) => peer.close(r));
  }
});

test("a connection that stops answering the heartbeat is dropped and resumed", async () => {
  const port = await freePort();
  const peer = new WebSocketServer({ host: "127.0.0.1", port });
  const urls = [];
  const pings = [];
  peer.on("connection", (socket, request) => {
    urls.push(new URL(request.url, "http://x"));
    const n = urls.length;
    socket.on("message", (data) => pings.push([n, data.toString()]));
    socket.send(JSON.stringify({ type: "welcome", connection_id: n, seq: 10, members: [], state: [], epoch: "e1" }));
    // The first connection never answers (a half-open socket); the second answers like the runtime.
    if (n > 1) socket.on("message", (data) => data.toString() === "ping" && socket.send("pong"));
  });
  await new Promise((r) => peer.once("listening", r));
  try {
    const r = connectRoom({ url: `http://127.0.0.1:${port}`, tenant: "acme", room: "silent", ...fast, heartbeatMs: 150 });
    clients.push(r);
    const seen = record(r);
    await waitFor(() => urls.length === 2 && r.status === "connected", "a second connection");
    assert.deepEqual(seen.errors.map((e) => e.code), ["heartbeat_timeout"]);
    assert.equal(urls[1].searchParams.get("resume_from"), "10");
    assert.deepEqual(pings.filter(([n]) => n === 1).map(([, text]) => text), ["ping"]);
    // The answered connection stays up through several heartbeats.
    await new Promise((res) => setTimeout(res, 700));
    assert.equal(urls.length, 2);
    assert.ok(pings.filter(([n]) => n === 2).length >= 3);
    r.close();
  } finally {
    await new Promise((r) => peer.close(r));
  }
});
