// The Next.js example (examples/nextjs-chat, built by its scripts/build.sh with OpenNext) under its
// own `wrangler dev`, bound to a real edgeroom `wrangler dev` through the EDGEROOM service binding
// (wrangler's dev registry, in a folder of this test's own), driven by Debian's Chromium with
// playwright-core: the server-rendered HTML holds the room's last messages, the page resumes from
// the rendered seq (a message published between render and connect shows once), a message
// published through edgeroom's REST API appears live, two pages see each other in presence and
// the reactions counter agrees on both.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";
import WebSocket from "ws";
import { connectRoom } from "@edgeroom/client";
import { NextApp, Server, root } from "./server.mjs";
import { waitFor } from "./util.mjs";

const executablePath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const artifacts = join(root, "target/nextjs-screenshots");
const tenant = "demo";
const secret = "nextjs-example-test-secret-0123456789";
const room = "nextjs-e2e";
let registry;
let server;
let app;
let browser;
const problems = []; // console errors and uncaught page errors, from every page

before(async () => {
  mkdirSync(artifacts, { recursive: true });
  // A dev registry of this test's own: the app's binding must reach this edgeroom, not another
  // `wrangler dev` named "edgeroom" on the machine.
  registry = mkdtempSync(join(tmpdir(), "edgeroom-registry-"));
  const env = { WRANGLER_REGISTRY_PATH: registry };
  [server, browser] = await Promise.all([
    Server.start({
      env,
      vars: {
        TENANT_SECRETS: JSON.stringify({ [tenant]: secret }),
        // Publish the KV read model after the first REST read, every second, so renders use it.
        READ_MODEL_MIN_READS: "1",
        READ_MODEL_INTERVAL_MS: "1000",
        FLUSH_INTERVAL_MS: "1000",
      },
    }),
    chromium.launch({ executablePath, args: ["--no-sandbox"] }),
  ]);
  app = await NextApp.start({ env, vars: { EDGEROOM_PUBLIC_URL: server.httpUrl, EDGEROOM_TENANT: tenant, EDGEROOM_TENANT_SECRET: secret } });
});

after(async () => {
  await browser?.close();
  await app?.dispose();
  await server?.dispose();
  if (registry) rmSync(registry, { recursive: true, force: true });
});

/** Publishes through edgeroom's REST API (anonymous dev access on loopback); resolves with the seq. */
async function publish(text, name = "REST API") {
  const response = await fetch(`${server.httpUrl}/v1/t/${tenant}/rooms/${room}/messages`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ body: { text, name } }),
  });
  assert.equal(response.status, 200, await response.clone().text());
  return (await response.json()).seq;
}

/** Sets a key of the room's shared state with the browser client (in Node); resolves with the seq. */
async function setState(key, value) {
  const client = connectRoom({ url: server.httpUrl, tenant, room, WebSocket });
  try {
    return (await client.setState(key, value)).seq;
  } finally {
    client.close();
  }
}

/** The page's raw HTML, as the server sent it (no script has run). */
async function rawPage(path = `/rooms/${room}`) {
  const response = await fetch(`${app.httpUrl}${path}`);
  assert.equal(response.status, 200, `GET ${path}: ${response.status}\n${app.logTail()}`);
  return response.text();
}

/** The messages in raw HTML, as [seq, text], and the footer's rendered position. */
function parse(html) {
  const messages = [...html.matchAll(/<li[^>]*data-seq="(\d+)"[^>]*>.*?<p class="text">([^<]*)<\/p>/g)].map((m) => [Number(m[1]), m[2]]);
  const footer = /<footer id="rendered" data-seq="(\d+)" data-epoch="([^"]*)" data-source="([^"]*)"/.exec(html);
  assert.ok(footer, "the page has its rendered position");
  const topic = /<p id="topic">([^<]*)<\/p>/.exec(html)?.[1] ?? null;
  return { messages, seq: Number(footer[1]), epoch: footer[2], source: footer[3], topic };
}

async function open(context, name, gate) {
  const page = await context.newPage();
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`${name}: console error: ${message.text()}`);
  });
  page.on("pageerror", (error) => problems.push(`${name}: page error: ${error.message}`));
  if (gate) await page.route("**/_next/static/**/*.js", async (route) => (await gate, route.continue()));
  await page.goto(`${app.httpUrl}/rooms/${room}?name=${encodeURIComponent(name)}`, { waitUntil: gate ? "domcontentloaded" : "load" });
  return page;
}

/** The messages a page shows, as [seq, text], in order. */
function shown(page) {
  return page.$$eval("#messages li[data-seq]", (items) => items.map((li) => [Number(li.dataset.seq), li.querySelector(".text")?.textContent ?? ""]));
}

async function reactions(page) {
  return Number(await page.locator("#reactions-count").textContent());
}

test("the server-rendered HTML holds the room's last messages and state, from edgeroom over the service binding", async () => {
  const topicSeq = await setState("topic", "Launch planning");
  const seqs = [];
  for (const text of ["First message", "Second message", "Third message"]) seqs.push(await publish(text));
  assert.deepEqual(seqs, [topicSeq + 1, topicSeq + 2, topicSeq + 3]);

  const page = parse(await rawPage());
  assert.deepEqual(page.messages, [
    [seqs[0], "First message"],
    [seqs[1], "Second message"],
    [seqs[2], "Third message"],
  ]);
  assert.equal(page.topic, "Launch planning");
  assert.equal(page.seq, seqs[2], "rendered up to the last event");
  assert.match(page.epoch, /^[0-9a-f]+$/);
  assert.match(await rawPage(), /id="reactions-count">0</);

  // A name edgeroom does not allow is a 404 page, not a call to edgeroom.
  assert.equal((await fetch(`${app.httpUrl}/rooms/bad%20name`)).status, 404);
});

test("once the room publishes its KV read model, renders use it and history brings it up to the present", async () => {
  let rendered;
  const last = await waitFor(async () => {
    const seq = await publish(`Render check at ${Date.now()}`);
    rendered = parse(await rawPage());
    // Whatever the read model's age, the page is rendered up to the event just published.
    assert.equal(rendered.seq, seq);
    assert.equal(rendered.messages.at(-1)?.[0], seq);
    return rendered.source === "kv" ? seq : null;
  }, "a render from the KV read model", 30_000);
  // A state change right after: the read model may not have it yet; the history page does.
  const seq = await setState("topic", "Launch day");
  rendered = parse(await rawPage());
  assert.equal(rendered.topic, "Launch day");
  assert.equal(rendered.seq, seq);
  assert.ok(seq > last);
});

test("live: resumes from the rendered seq, REST publishes appear, presence and reactions agree on two pages", async () => {
  const ctxA = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const ctxB = await browser.newContext({ viewport: { width: 390, height: 800 } });

  // The last event before Ada's render is a message, so a resume from one too early would show it twice.
  await publish("Just before Ada's page");
  // Ada's page arrives, but its scripts are held back: what she sees is the server's HTML.
  let release;
  const gate = new Promise((resolve) => (release = resolve));
  const ada = await open(ctxA, "Ada Lovelace", gate);
  const renderedSeq = Number(await ada.getAttribute("#rendered", "data-seq"));
  const before = await shown(ada);
  assert.ok(before.length >= 3, "the last messages are in the page before any script ran");
  assert.deepEqual(before.at(-1), [renderedSeq, "Just before Ada's page"]);
  assert.equal(await ada.getAttribute("#status", "data-status"), "rendered");

  // Published after the render and before the page connects: it must show up, exactly once.
  const between = await publish("Between render and connect");
  assert.equal(between, renderedSeq + 1);
  release();
  await ada.locator('#status[data-status="connected"]').waitFor();
  await ada.locator(`#messages li[data-seq="${between}"]`).waitFor();

  const grace = await open(ctxB, "Grace Hopper");
  await grace.locator('#status[data-status="connected"]').waitFor();

  // Presence: both pages list both people, each with the user id of their own token.
  for (const page of [ada, grace]) {
    await page.locator("#member-count", { hasText: "2" }).waitFor();
    await waitFor(async () => {
      const names = await page.$$eval("#members li .who", (items) => items.map((li) => li.textContent).sort());
      return names.join(",") === "Ada Lovelace,Grace Hopper";
    }, "both names in presence");
  }
  // A new name reaches the other page as a presence update.
  await grace.fill("#name", "Grace B. Hopper");
  await ada.locator("#members li .who", { hasText: "Grace B. Hopper" }).waitFor();
  const users = await ada.$$eval("#members li", (items) => items.map((li) => li.dataset.user));
  assert.equal(new Set(users).size, 2, "each visitor has their own token subject");
  for (const user of users) assert.match(user, /^[0-9a-f]{16}$/);

  // A message published through edgeroom's REST API appears live on both.
  const live = await publish("Live from the REST API");
  for (const page of [ada, grace]) await page.locator(`#messages li[data-seq="${live}"]`, { hasText: "Live from the REST API" }).waitFor();

  // And one written on a page.
  await ada.fill("#message", "Hello Grace, from the page");
  await ada.press("#message", "Enter");
  await grace.locator("#messages li", { hasText: "Hello Grace, from the page" }).waitFor();

  // Every message once, in order, on both pages; Ada's includes what was rendered on the server.
  const adaShows = await shown(ada);
  const seqs = adaShows.map(([seq]) => seq);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), "in seq order");
  assert.equal(new Set(seqs).size, seqs.length, "no message twice");
  assert.deepEqual(adaShows.slice(0, before.length), before, "the rendered messages stay as they were");
  assert.equal(adaShows.filter(([, text]) => text === "Between render and connect").length, 1);
  const graceShows = await shown(grace);
  assert.deepEqual(adaShows.slice(-graceShows.length), graceShows);

  // The reactions counter: 2 from Ada, 1 from Grace; both pages and edgeroom agree.
  const start = await reactions(ada);
  await ada.click("#react");
  await ada.click("#react");
  await grace.click("#react");
  for (const page of [ada, grace]) await waitFor(async () => (await reactions(page)) === start + 3, "the reactions count on both pages");
  const counter = await (await fetch(`${server.httpUrl}/v1/t/${tenant}/counters/reactions.${room}?consistency=strong`)).json();
  assert.equal(counter.value, start + 3);

  await ada.screenshot({ path: join(artifacts, "room-laptop.png") });
  await grace.screenshot({ path: join(artifacts, "room-phone.png") });
  assert.deepEqual(problems, []);
  await ctxA.close();
  await ctxB.close();
});
