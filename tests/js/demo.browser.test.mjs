// The /demo/ page in headless Chromium (Debian's /usr/bin/chromium driven by playwright-core)
// against a real `wrangler dev`: two people chat, one goes offline and comes back, presence,
// the shared topic and the likes counter agree, and no page logs an error.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";
import { Server, root } from "./server.mjs";

const executablePath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const artifacts = join(root, "target/demo-screenshots");
let server;
let browser;
const problems = []; // console errors and uncaught page errors, from every page

before(async () => {
  mkdirSync(artifacts, { recursive: true });
  [server, browser] = await Promise.all([Server.start(), chromium.launch({ executablePath, args: ["--no-sandbox"] })]);
});
after(async () => {
  await browser?.close();
  await server?.dispose();
});

async function open(context, room, name) {
  const page = await context.newPage();
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`${name}: console error: ${message.text()}`);
  });
  page.on("pageerror", (error) => problems.push(`${name}: page error: ${error.message}`));
  await page.goto(`${server.httpUrl}/demo/?room=${room}&name=${encodeURIComponent(name)}`);
  await page.locator('#status[data-status="connected"]').waitFor();
  return page;
}

async function say(page, text) {
  await page.fill("#message", text);
  await page.press("#message", "Enter");
}

/** The confirmed messages of a page, as [seq, text], in the order shown. */
function shown(page) {
  return page.$$eval("#messages .msg[data-seq]", (items) => items.map((li) => [Number(li.dataset.seq), li.querySelector(".text").textContent]));
}

async function waitForTexts(page, count) {
  try {
    await page.waitForFunction((n) => document.querySelectorAll("#messages .msg[data-seq]").length >= n, count, { timeout: 15_000 });
  } catch (error) {
    const html = await page.evaluate(() => document.querySelector("#scroll")?.outerHTML);
    throw new Error(`${error.message}\npage errors so far: ${JSON.stringify(problems)}\n${html}`);
  }
}

test("two pages chat, one goes offline and back: every message once, same order, presence and likes agree", async () => {
  const ctxA = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const ctxB = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const room = "browser-e2e";
  const ada = await open(ctxA, room, "Ada Lovelace");
  const grace = await open(ctxB, room, "Grace Hopper");

  for (const page of [ada, grace]) await page.locator("#member-count", { hasText: "2" }).waitFor();
  await say(ada, "Hello from Ada");
  await waitForTexts(grace, 1);
  await say(grace, "Hi Ada, Grace here");
  await waitForTexts(ada, 2);

  // The shared topic.
  await ada.fill("#topic", "Launch planning");
  await ada.press("#topic", "Enter");
  await grace.waitForFunction(() => document.querySelector("#topic").value === "Launch planning");

  // Ada goes offline. Grace writes meanwhile, and so does Ada (her messages wait in the outbox).
  await ctxA.setOffline(true);
  await ada.locator('#status[data-status="offline"]').waitFor();
  await say(grace, "Grace while Ada is away 1");
  await say(grace, "Grace while Ada is away 2");
  await say(ada, "Ada offline 1");
  await say(ada, "Ada offline 2");
  await grace.waitForFunction(() => document.querySelectorAll("#messages .msg[data-seq]").length === 4);
  assert.equal(await ada.locator("#outgoing .msg.pending").count(), 2);
  await ada.screenshot({ path: join(artifacts, "demo-offline.png") });
  await ada.locator("#messages .msg[data-seq]").nth(1).waitFor(); // still shows what it had
  assert.equal((await shown(ada)).length, 2);
  // Grace sees Ada leave: her socket is gone.
  await grace.locator("#member-count", { hasText: "1" }).waitFor();

  await ctxA.setOffline(false);
  await ada.locator('#status[data-status="connected"]').waitFor();
  for (const page of [ada, grace]) await waitForTexts(page, 6);
  await ada.locator("#outgoing .msg").first().waitFor({ state: "detached" });
  await grace.locator("#member-count", { hasText: "2" }).waitFor();

  const [fromAda, fromGrace] = await Promise.all([shown(ada), shown(grace)]);
  assert.deepEqual(fromAda, fromGrace, "both pages show the same messages in the same order");
  const texts = fromAda.map(([, text]) => text);
  assert.equal(new Set(texts).size, texts.length, "no message is shown twice");
  assert.deepEqual(texts, [
    "Hello from Ada",
    "Hi Ada, Grace here",
    "Grace while Ada is away 1",
    "Grace while Ada is away 2",
    "Ada offline 1",
    "Ada offline 2",
  ]);
  const seqs = fromAda.map(([seq]) => seq);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), "shown in seq order");

  // Likes: both click; both show the same count.
  await ada.click("#like");
  await ada.click("#like");
  await grace.click("#like");
  for (const page of [ada, grace]) await page.locator("#likes", { hasText: "3" }).waitFor();

  // Typing shows on the other page.
  await grace.fill("#message", "thinking");
  await ada.locator("#typing", { hasText: "Grace Hopper is typing" }).waitFor();
  await grace.fill("#message", "");

  await ada.screenshot({ path: join(artifacts, "demo-laptop.png") });

  // Grace closes her tab: Ada's presence drops her.
  await ctxB.close();
  await ada.locator("#member-count", { hasText: "1" }).waitFor();
  await ada.locator("#members .member").first().waitFor();
  assert.equal(await ada.locator("#members .member").count(), 1);
  await ctxA.close();

  assert.deepEqual(problems, [], "no console errors");
});

test("on a phone-sized screen the demo fits without sideways scrolling", async () => {
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
  const page = await open(phone, "browser-e2e", "Linus");
  await waitForTexts(page, 6); // the room's history replays on join
  await page.locator("#likes", { hasText: "3" }).waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `page is ${overflow}px wider than the screen`);
  assert.ok(await page.locator("#send").isVisible());
  assert.ok(await page.locator("#message").isVisible());
  await page.screenshot({ path: join(artifacts, "demo-phone.png") });
  await phone.close();
  assert.deepEqual(problems, [], "no console errors");
});
