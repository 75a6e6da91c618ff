// The admin console (/admin/) in headless Chromium (Debian's /usr/bin/chromium driven by
// playwright-core) against a real `wrangler dev` with an ADMIN_KEY: a wrong key is refused; the
// operator signs in, finds the room a test client made, watches its message arrive in the live
// tail and the chart move, kicks the client (close 4013), flushes, sees the snapshot, restores it,
// and resets a counter. Screenshots of every view, laptop and phone, go to target/console-screenshots.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";
import WebSocket from "ws";
import { Server, root } from "./server.mjs";
import { waitFor } from "./util.mjs";

const executablePath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const artifacts = join(root, "target/console-screenshots");
const ADMIN_KEY = "console-test-admin-key-0123456789";
const ROOM = "ops-room";
let server;
let browser;
const problems = []; // console errors and uncaught page errors, from every page
let expect401 = false; // the wrong-key step makes the browser log the refused request

before(async () => {
  mkdirSync(artifacts, { recursive: true });
  [server, browser] = await Promise.all([
    Server.start({ vars: { ADMIN_KEY, FLUSH_INTERVAL_MS: "1000", IDLE_SNAPSHOT_MS: "1000", TENANT_SECRETS: JSON.stringify({ demo: "console-test-tenant-secret-0123456789" }) } }),
    chromium.launch({ executablePath, args: ["--no-sandbox"] }),
  ]);
});
after(async () => {
  await browser?.close();
  await server?.dispose();
});

async function newPage(context, name) {
  const page = await context.newPage();
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    if (expect401 && /status of 401/.test(message.text())) return;
    problems.push(`${name}: console error: ${message.text()}`);
  });
  page.on("pageerror", (error) => problems.push(`${name}: page error: ${error.message}`));
  return page;
}

/** A room client over Node's `ws` (dev auth): resolves once welcomed, records its close code. */
async function joinRoom(room, name) {
  const ws = new WebSocket(`ws://127.0.0.1:${server.port}/v1/t/demo/rooms/${room}/ws?format=json`);
  const client = { ws, welcome: null, closeCode: null };
  ws.on("close", (code) => (client.closeCode = code));
  await new Promise((resolve, reject) => {
    ws.on("message", (data) => {
      const frame = JSON.parse(data.toString());
      if (frame.type === "welcome" && !client.welcome) {
        client.welcome = frame;
        resolve();
      }
    });
    ws.on("error", reject);
  });
  ws.send(JSON.stringify({ type: "presence_set", data: { name } }));
  client.publish = (body) => ws.send(JSON.stringify({ type: "publish", op_id: randomUUID(), body }));
  return client;
}

async function signIn(page, key) {
  await page.goto(`${server.httpUrl}/admin/`);
  await page.fill("#key", key);
  await page.fill("#tenant", "demo");
  await page.click("#sign-in");
}

async function confirmDialog(page, label) {
  await page.locator("#confirm:not([hidden])").waitFor();
  assert.equal(await page.locator("#confirm-ok").textContent(), label);
  await page.click("#confirm-ok");
  await page.locator("#confirm").waitFor({ state: "hidden" });
}

async function noSidewaysScroll(page, what) {
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `${what} is ${overflow}px wider than the screen`);
}

let client;

test("an operator signs in, watches a room live, kicks, flushes, restores and resets a counter", async () => {
  // A client makes the room and some activity; a counter gets a value.
  client = await joinRoom(ROOM, "Ada");
  client.publish({ text: "warming up" });
  const add = await fetch(`${server.httpUrl}/v1/t/demo/counters/likes/add`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ delta: 7, op_id: randomUUID() }),
  });
  assert.equal(add.status, 200);

  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await newPage(context, "laptop");

  // A wrong key shows a clear error and signs nobody in.
  await page.goto(`${server.httpUrl}/admin/`);
  await page.locator("#login").waitFor();
  await page.screenshot({ animations: "disabled", path: join(artifacts, "login-laptop.png") });
  expect401 = true;
  await signIn(page, "not-the-key");
  await page.locator("#login-error", { hasText: "not accepted" }).waitFor();
  expect401 = false;
  assert.equal(await page.evaluate(() => sessionStorage.getItem("edgeroom.admin.key")), null);
  await page.screenshot({ animations: "disabled", path: join(artifacts, "login-error-laptop.png") });

  // The right key: the overview. The key is in sessionStorage, in no served file.
  await signIn(page, ADMIN_KEY);
  await page.locator("#tenant-name", { hasText: "demo" }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem("edgeroom.admin.key")), ADMIN_KEY);
  for (const file of ["index.html", "console.js", "style.css"]) {
    const text = await (await fetch(`${server.httpUrl}/admin/${file}`)).text();
    assert.ok(!text.includes(ADMIN_KEY), `${file} does not contain the key`);
  }
  // Once the room's first flush is in D1, the overview counts it.
  // Each try waits a little: reloading every few milliseconds only piles up requests.
  await waitFor(async () => {
    await page.waitForTimeout(250);
    await page.reload();
    await page.locator("#tenant-name").waitFor();
    return (await page.locator('[data-stat="rooms"] .stat-value').textContent()) === "1";
  }, "the overview to count the room", 20_000);
  await page.locator(".cost tbody tr").first().waitFor();
  assert.equal(await page.locator(".cost tbody tr").count(), 11, "one cost line per billable unit");
  assert.equal(await page.locator(".cost tbody tr[data-unit=\"worker_requests\"] .allowance").textContent(), "100k");
  await page.screenshot({ animations: "disabled", path: join(artifacts, "overview-laptop.png"), fullPage: true });

  // The rooms table lists the client's room.
  await page.click('[data-tab="rooms"]');
  await page.locator(`tr[data-room="${ROOM}"]`).waitFor();
  await page.fill("#room-search", "nomatch");
  await page.locator("#rooms-body .empty", { hasText: "No room matches" }).waitFor();
  await page.fill("#room-search", "ops");
  await page.locator(`tr[data-room="${ROOM}"]`).waitFor();
  await page.selectOption("#room-sort", "name");
  await page.locator(`tr[data-room="${ROOM}"]`).waitFor();
  await page.screenshot({ animations: "disabled", path: join(artifacts, "rooms-laptop.png"), fullPage: true });

  // Paging: 21 more rooms make two pages of 20 (server-side publishes, each room flushed once).
  await Promise.all(
    Array.from({ length: 21 }, (_, i) =>
      fetch(`${server.httpUrl}/v1/t/demo/rooms/page-${String(i).padStart(2, "0")}/messages`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ body: { n: i } }),
      }).then((response) => assert.equal(response.status, 200)),
    ),
  );
  await page.fill("#room-search", "page-");
  await page.selectOption("#room-sort", "name");
  await waitFor(async () => {
    await page.click("#rooms-refresh");
    await page.waitForTimeout(250);
    return (await page.locator("#rooms-body tr.row").count()) === 20 && (await page.locator("#next-page").isEnabled());
  }, "a full first page of rooms");
  assert.equal(await page.locator("#rooms-body tr.row").first().getAttribute("data-room"), "page-00");
  await page.click("#next-page");
  await page.locator('#rooms-body tr.row[data-room="page-20"]').waitFor();
  assert.equal(await page.locator("#rooms-body tr.row").count(), 1);
  assert.ok(await page.locator("#next-page").isDisabled());
  await page.click("#prev-page");
  await page.locator('#rooms-body tr.row[data-room="page-00"]').waitFor();
  await page.fill("#room-search", "ops");
  await page.locator(`tr[data-room="${ROOM}"]`).waitFor();

  // The room page: the member, the tail connected, the client's messages live in the tail and the chart.
  await page.click(`tr[data-room="${ROOM}"] .room-link`);
  await page.locator('#tail-status[data-status="connected"]').waitFor();
  await page.locator("#members .member", { hasText: "Ada" }).waitFor();
  await page.waitForFunction(() => Number(document.querySelector('[data-chart="messages"]').dataset.points) >= 1);
  for (let i = 1; i <= 5; i++) client.publish({ text: `hello console ${i}` });
  await page.locator("#tail .tail-item", { hasText: "hello console 5" }).waitFor();
  // The tail opened with the room's recent history, so the message from before the page is there too.
  assert.equal(await page.locator('#tail .tail-item[data-seq="1"]', { hasText: "warming up" }).count(), 1);
  await page.waitForFunction(() => Number(document.querySelector('[data-chart="messages"]').dataset.peak) > 0);
  await page.waitForFunction(() => Number(document.querySelector('[data-chart="deliveries"]').dataset.peak) > 0);
  await page.waitForFunction(() => Number(document.querySelector('[data-chart="connections"]').dataset.peak) >= 2); // Ada and the tail
  await page.locator("#state").waitFor();
  await page.screenshot({ animations: "disabled", path: join(artifacts, "room-laptop.png"), fullPage: true });

  // Kick Ada: the confirm dialog, then the client gets close code 4013 and leaves the members.
  const connectionId = client.welcome.connection_id;
  await page.click(`#members .member[data-connection="${connectionId}"] .kick`);
  await page.locator("#confirm-title", { hasText: "Kick Ada?" }).waitFor();
  await page.screenshot({ animations: "disabled", path: join(artifacts, "confirm-laptop.png") });
  await confirmDialog(page, "Kick");
  await waitFor(() => client.closeCode !== null, "the client to be closed");
  assert.equal(client.closeCode, 4013);
  await page.locator("#members .empty").waitFor();

  // Cancelling a confirm does nothing.
  await page.click("#close-all");
  await page.click("#confirm-cancel");
  await page.locator("#confirm").waitFor({ state: "hidden" });

  // Flush now: the snapshot of the current seq is listed.
  const seq = Number((await (await fetch(`${server.httpUrl}/v1/admin/t/demo/rooms/${ROOM}`, { headers: { Authorization: `Bearer ${ADMIN_KEY}` } })).json()).seq);
  assert.ok(seq >= 6);
  await page.click("#flush");
  await confirmDialog(page, "Flush now");
  await page.locator(`#snapshots-body tr[data-seq="${seq}"]`).waitFor();
  await page.locator(`#snapshots-body tr[data-seq="${seq}"] .pill`, { hasText: "verified" }).waitFor();

  // Restore it: the room says so, and the tail sees the new epoch.
  const epochBefore = await page.locator('[data-fact="epoch"] .fact-value').textContent();
  await page.click(`#snapshots-body tr[data-seq="${seq}"] .restore`);
  await confirmDialog(page, "Restore");
  await page.locator(".toast", { hasText: `Restored the snapshot of seq ${seq}` }).waitFor();
  await waitFor(async () => (await page.locator('[data-fact="epoch"] .fact-value').textContent()) !== epochBefore, "a new epoch after the restore");
  await page.locator("#tail .tail-note", { hasText: "History replaced" }).waitFor();
  await page.screenshot({ animations: "disabled", path: join(artifacts, "room-after-restore-laptop.png"), fullPage: true });

  // Close all: the console's own tail is closed too (4014); it reconnects and fetches what it missed.
  await page.click("#close-all");
  await confirmDialog(page, "Close all");
  await page.locator(".toast", { hasText: /Closed \d+ connection/ }).waitFor();
  const publish = await fetch(`${server.httpUrl}/v1/t/demo/rooms/${ROOM}/messages`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ body: { text: "while the tail was away" } }),
  });
  assert.equal(publish.status, 200);
  await page.locator("#tail .tail-item", { hasText: "while the tail was away" }).waitFor();
  await page.locator('#tail-status[data-status="connected"]').waitFor();
  assert.equal(await page.locator("#tail .tail-item", { hasText: "while the tail was away" }).count(), 1, "shown once");

  // Counters: listed after their flush; reset to 0 through the confirm dialog.
  await page.click('[data-tab="counters"]');
  await waitFor(async () => {
    if (await page.locator('tr[data-counter="likes"]').count()) return true;
    await page.click("#counters-refresh");
    await page.waitForTimeout(250);
    return false;
  }, "the likes counter to be listed");
  assert.equal(await page.locator('tr[data-counter="likes"] .value').textContent(), "7");
  // The counter's cost: the same units as the overview, from the counter's own metrics.
  await page.click('tr[data-counter="likes"] .cost');
  await page.locator('#counter-cost tr[data-unit="worker_requests"]').waitFor();
  for (const unit of ["object_requests", "rows_written", "kv_writes", "d1_rows_written", "queue_ops"]) {
    assert.equal(await page.locator(`#counter-cost tr[data-unit="${unit}"]`).count(), 1, unit);
  }
  assert.equal(await page.locator('#counter-cost tr[data-unit="queue_ops"] .allowance').textContent(), "10.0k");
  await page.screenshot({ animations: "disabled", path: join(artifacts, "counters-laptop.png"), fullPage: true });
  await page.click('tr[data-counter="likes"] .reset');
  await confirmDialog(page, "Reset");
  await page.locator('tr[data-counter="likes"] .value', { hasText: /^0$/ }).waitFor();
  const strong = await (await fetch(`${server.httpUrl}/v1/t/demo/counters/likes?consistency=strong`)).json();
  assert.equal(Number(strong.value), 0);

  // Signing out forgets the key.
  await page.click("#logout");
  await page.locator("#login").waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem("edgeroom.admin.key")), null);
  await context.close();
  assert.deepEqual(problems, [], "no console errors");
});

test("on a phone-sized screen every view fits without sideways scrolling", async () => {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
  const page = await newPage(context, "phone");
  await page.goto(`${server.httpUrl}/admin/`);
  await page.locator("#login").waitFor();
  await noSidewaysScroll(page, "the login");
  await page.screenshot({ animations: "disabled", path: join(artifacts, "login-phone.png") });
  await signIn(page, ADMIN_KEY);
  await page.locator("#tenant-name").waitFor();
  await page.locator(".cost tbody tr").first().waitFor();
  await noSidewaysScroll(page, "the overview");
  await page.screenshot({ animations: "disabled", path: join(artifacts, "overview-phone.png"), fullPage: true });

  await page.click('[data-tab="rooms"]');
  await page.locator("#rooms-body tr.row").nth(19).waitFor();
  await noSidewaysScroll(page, "the rooms table");
  await page.screenshot({ animations: "disabled", path: join(artifacts, "rooms-phone.png"), fullPage: true });
  await page.fill("#room-search", "ops");
  await page.locator("#rooms-body tr.row").nth(1).waitFor({ state: "detached" });
  await page.locator(`tr[data-room="${ROOM}"]`).waitFor();

  const watcher = await joinRoom(ROOM, "Grace");
  await page.click(`tr[data-room="${ROOM}"] .room-link`);
  await page.locator('#tail-status[data-status="connected"]').waitFor();
  await page.locator("#members .member", { hasText: "Grace" }).waitFor();
  watcher.publish({ text: "hello from a phone test" });
  await page.locator("#tail .tail-item", { hasText: "hello from a phone test" }).waitFor();
  await page.waitForFunction(() => Number(document.querySelector('[data-chart="messages"]').dataset.points) >= 2);
  await noSidewaysScroll(page, "the room page");
  await page.screenshot({ animations: "disabled", path: join(artifacts, "room-phone.png"), fullPage: true });
  watcher.ws.close();

  await page.click('[data-tab="counters"]');
  await page.locator('tr[data-counter="likes"]').waitFor();
  await noSidewaysScroll(page, "the counters");
  await page.screenshot({ animations: "disabled", path: join(artifacts, "counters-phone.png"), fullPage: true });
  await context.close();
  assert.deepEqual(problems, [], "no console errors");
});
