// @ts-check
// The edgeroom demo: a chat room with presence (who is here, who is typing), a shared topic (room
// state) and a live likes counter, written only against @edgeroom/client.
import { connectCounter, connectRoom } from "@edgeroom/client";

const params = new URLSearchParams(location.search);
const roomName = validName(params.get("room")) ?? "lobby";
const tenant = validName(params.get("tenant")) ?? "demo";
/**
 * The element with this id (the page always has it).
 * @template {HTMLElement} [T=HTMLElement]
 * @param {string} id
 * @returns {T}
 */
function $(id) {
  const element = document.getElementById(id);
  if (!element) throw new Error(`#${id} is missing from the page`);
  return /** @type {T} */ (element);
}
/**
 * A JSON value as an object with any fields (messages and presence come from other people).
 * @param {unknown} value
 * @returns {Record<string, any>}
 */
function fields(value) {
  return value && typeof value === "object" && !Array.isArray(value) ? /** @type {Record<string, any>} */ (value) : {};
}

const colors = ["#4f46e5", "#0891b2", "#059669", "#d97706", "#db2777", "#7c3aed", "#2563eb", "#dc2626"];
const me = loadMe();

// --- connections -----------------------------------------------------------------------------
// Locally (`./scripts/dev.sh`) no token is needed; elsewhere pass one: /demo/?room=lobby&token=…
const token = params.get("token") ?? undefined;
const shared = { url: location.origin, tenant, token, offlineTtlMs: 120_000 };
const room = connectRoom({ ...shared, room: roomName, since: 0, presence: presenceData(false) });
const likes = connectCounter({ ...shared, name: `likes.${roomName}`.slice(0, 128) });
/** @type {any} */ (window).edgeroomDemo = { room, likes }; // for the curious, in the console

// --- header and status -------------------------------------------------------------------------
$("room-name").textContent = `#${roomName}`;
document.title = `#${roomName} · edgeroom`;
/** @type {Record<string, string>} */
const statusText = { connecting: "Connecting…", connected: "Live", reconnecting: "Reconnecting…", offline: "Offline", closed: "Closed" };
function showStatus() {
  const status = room.status === "connected" && likes.status !== "connected" ? likes.status : room.status;
  $("status").dataset.status = status;
  $("app").dataset.status = status;
  $("banner").textContent =
    status === "offline"
      ? "You are offline. Messages you send now are kept and go out when you are back (for up to 2 minutes)."
      : status === "reconnecting"
        ? "Connection lost. Reconnecting… you will not miss a message."
        : "";
  $("status-text").textContent = statusText[status] ?? status;
}
room.on("status", showStatus);
likes.on("status", showStatus);
room.on("error", (error) => console.warn(`edgeroom: ${error.code}: ${error.message}`));
likes.on("error", (error) => console.warn(`edgeroom: ${error.code}: ${error.message}`));

$("share").addEventListener("click", async () => {
  const link = `${location.origin}${location.pathname}?room=${encodeURIComponent(roomName)}`;
  try {
    await navigator.clipboard.writeText(link);
    flash($("share"), "Link copied");
  } catch {
    flash($("share"), link);
  }
});

// --- likes ---------------------------------------------------------------------------------------
likes.on("change", ({ value }) => {
  $("likes").textContent = formatCount(value);
  $("like").classList.remove("bump");
  void $("like").offsetWidth; // restart the animation
  $("like").classList.add("bump");
});
$("like").addEventListener("click", () => {
  likes.add(1).catch((error) => console.warn(`like not counted: ${error.message}`));
});

// --- topic (shared state) --------------------------------------------------------------------------
/** @type {HTMLInputElement} */
const topic = $("topic");
room.on("state", ({ state, key }) => {
  if (key !== null && key !== "topic") return;
  const value = fields(state.get("topic"));
  if (document.activeElement !== topic) topic.value = String(value.text ?? "");
  $("topic-meta").textContent = value.by ? `set by ${value.by}` : "";
});
function saveTopic() {
  const text = topic.value.trim();
  const current = room.state.get("topic");
  if (String(fields(current).text ?? "") === text) return;
  const done = text ? room.setState("topic", { text, by: me.name }) : room.deleteState("topic");
  done.catch((error) => console.warn(`topic not saved: ${error.message}`));
}
topic.addEventListener("keydown", (event) => {
  if (event.key === "Enter") topic.blur();
  if (event.key === "Escape") {
    topic.value = String(fields(room.state.get("topic")).text ?? "");
    topic.blur();
  }
});
topic.addEventListener("blur", saveTopic);

// --- messages ------------------------------------------------------------------------------------
const list = $("messages");
const scroller = $("scroll");
const outgoing = $("outgoing");
/** @type {Map<string, HTMLElement>} client id of an unacknowledged message -> its element */
const pending = new Map();
/** @type {{ author: unknown, at: number } | null} the last rendered message, to group consecutive ones */
let last = null;

room.on("message", (event) => {
  const body = event.body && typeof event.body === "object" ? fields(event.body) : { text: String(event.body) };
  const mine = pending.get(body.id);
  if (mine) {
    mine.remove();
    pending.delete(body.id);
  }
  const item = renderMessage(body, { mine: Boolean(mine) || body.author === me.id });
  item.dataset.seq = String(event.seq);
  appendToList(item, body);
});
room.on("gap", ({ resumeFrom, seq }) => {
  const missed = seq - resumeFrom;
  const text = resumeFrom === 0 ? "Earlier messages are no longer kept" : `${missed} update${missed === 1 ? "" : "s"} missed while you were away`;
  const notice = document.createElement("li");
  notice.className = "notice";
  notice.textContent = text;
  list.append(notice);
  last = null;
});

/**
 * @param {HTMLElement} item
 * @param {Record<string, any>} body
 */
function appendToList(item, body) {
  document.getElementById("empty")?.remove();
  const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
  const at = Number(body.at) || 0;
  if (last && last.author === body.author && at - last.at < 5 * 60_000) item.classList.add("cont");
  last = { author: body.author, at };
  list.append(item);
  if (atBottom || item.classList.contains("mine")) scroller.scrollTop = scroller.scrollHeight;
}

/**
 * @param {Record<string, any>} body
 * @param {{ mine?: boolean, state?: string }} [options]
 */
function renderMessage(body, { mine = false, state = "" } = {}) {
  const item = document.createElement("li");
  item.className = `msg${mine ? " mine" : ""}${state ? ` ${state}` : ""}`;
  const name = String(body.name ?? "Someone");
  const avatar = document.createElement("div");
  avatar.className = "avatar";
  avatar.style.background = safeColor(body.color);
  avatar.textContent = initials(name);
  const main = document.createElement("div");
  const meta = document.createElement("div");
  meta.className = "meta";
  const author = document.createElement("span");
  author.className = "author";
  author.textContent = name;
  const time = document.createElement("time");
  time.className = "time";
  const at = Number(body.at);
  if (at) {
    time.dateTime = new Date(at).toISOString();
    time.textContent = new Date(at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }
  meta.append(author, time);
  const text = document.createElement("div");
  text.className = "text";
  text.textContent = String(body.text ?? "");
  main.append(meta, text);
  item.append(avatar, main);
  return item;
}

/** @param {string} text */
function send(text) {
  const body = { id: crypto.randomUUID(), author: me.id, name: me.name, color: me.color, text, at: Date.now() };
  const item = renderMessage(body, { mine: true, state: "pending" });
  item.classList.add("outgoing-item");
  pending.set(body.id, item);
  if (outgoing.lastElementChild) item.classList.add("cont");
  outgoing.append(item);
  scroller.scrollTop = scroller.scrollHeight;
  room.publish(body).catch((error) => {
    if (!pending.has(body.id)) return;
    item.classList.replace("pending", "failed");
    const time = /** @type {HTMLElement} */ (item.querySelector(".time"));
    time.textContent = error.code === "expired" ? "not sent (offline too long) · " : `not sent: ${error.message} · `;
    const retry = document.createElement("button");
    retry.type = "button";
    retry.className = "retry";
    retry.textContent = "Retry";
    retry.addEventListener("click", () => {
      item.remove();
      pending.delete(body.id);
      send(text);
    });
    time.append(retry);
  });
}

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  /** @type {HTMLInputElement} */
  const input = $("message");
  const text = input.value.trim();
  if (!text) return;
  input.value = "";
  send(text);
  setTyping(false);
});

// --- presence: who is here, who is typing ----------------------------------------------------------
let typing = false;
/** @type {ReturnType<typeof setTimeout> | undefined} */
let typingTimer;
/** @param {boolean} isTyping */
function presenceData(isTyping) {
  return { id: me.id, name: me.name, color: me.color, typing: isTyping };
}
/** @param {boolean} value */
function setTyping(value) {
  clearTimeout(typingTimer);
  if (value) typingTimer = setTimeout(() => setTyping(false), 3000);
  if (typing === value) return;
  typing = value;
  room.setPresence(presenceData(value));
}
/** @type {HTMLInputElement} */
const messageInput = $("message");
messageInput.addEventListener("input", () => setTyping(messageInput.value.length > 0));

room.on("presence", ({ members }) => {
  const ul = $("members");
  ul.replaceChildren();
  // One row per person: several tabs of the same person show once.
  const people = new Map();
  for (const member of members) {
    const data = fields(member.data);
    const id = data.id ?? `c${member.connection_id}`;
    const self = member.connection_id === room.connectionId;
    const known = people.get(id);
    people.set(id, {
      name: String(data.name ?? "Guest"),
      color: data.color,
      typing: Boolean(data.typing) || Boolean(known?.typing),
      self: self || Boolean(known?.self),
    });
  }
  const ordered = [...people.values()].sort((a, b) => Number(b.self) - Number(a.self));
  for (const person of ordered) {
    const li = document.createElement("li");
    li.className = `member${person.self ? " me-row" : ""}`;
    const avatar = document.createElement("div");
    avatar.className = "avatar";
    avatar.style.background = safeColor(person.color);
    avatar.textContent = initials(person.name);
    avatar.title = person.name;
    const name = document.createElement("span");
    name.className = "member-name";
    name.textContent = person.self ? `${person.name} (you)` : person.name;
    const state = document.createElement("span");
    state.className = "member-state";
    state.textContent = person.typing && !person.self ? "typing…" : "";
    li.append(avatar, name, state);
    ul.append(li);
  }
  $("member-count").textContent = String(people.size);
  const typers = [...people.values()].filter((p) => p.typing && !p.self).map((p) => p.name);
  $("typing").textContent =
    typers.length === 0 ? "" : typers.length === 1 ? `${typers[0]} is typing…` : typers.length === 2 ? `${typers[0]} and ${typers[1]} are typing…` : "Several people are typing…";
});

// --- your name -------------------------------------------------------------------------------------
/** @type {HTMLInputElement} */
const nameInput = $("name");
nameInput.value = me.name;
nameInput.addEventListener("change", () => {
  const name = nameInput.value.trim().slice(0, 32);
  if (!name) {
    nameInput.value = me.name;
    return;
  }
  me.name = name;
  saveMe();
  room.setPresence(presenceData(typing));
});

// --- helpers ---------------------------------------------------------------------------------------
function loadMe() {
  let saved = null;
  try {
    saved = JSON.parse(localStorage.getItem("edgeroom-demo-me") ?? "null");
  } catch {
    saved = null;
  }
  const wanted = params.get("name");
  const person = {
    id: saved?.id ?? crypto.randomUUID(),
    name: (wanted ?? saved?.name ?? randomName()).slice(0, 32),
    color: saved?.color ?? colors[Math.floor(Math.random() * colors.length)],
  };
  // A name from the URL is for this tab only (so two tabs can be two people).
  if (wanted) person.id = crypto.randomUUID();
  else saveMe(person);
  return person;
}
function saveMe(person = me) {
  try {
    localStorage.setItem("edgeroom-demo-me", JSON.stringify(person));
  } catch {
    // private mode: the name lasts for this page only
  }
}
function randomName() {
  const animals = ["Otter", "Heron", "Lynx", "Puffin", "Badger", "Marten", "Ibis", "Gecko", "Falcon", "Koala"];
  return `${animals[Math.floor(Math.random() * animals.length)]} ${Math.floor(10 + Math.random() * 90)}`;
}
/** @param {string} name */
function initials(name) {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  return ((parts[0]?.[0] ?? "?") + (parts[1]?.[0] ?? "")).toUpperCase();
}
/** @param {unknown} color */
function safeColor(color) {
  return typeof color === "string" && /^#[0-9a-f]{6}$/i.test(color) ? color : "#6b7080";
}
/** @param {number} n */
function formatCount(n) {
  return n >= 10_000 ? `${(n / 1000).toFixed(n >= 100_000 ? 0 : 1)}k` : String(n);
}
/** @param {string | null} value */
function validName(value) {
  return value && /^[A-Za-z0-9._-]{1,128}$/.test(value) && value !== "." && value !== ".." ? value : null;
}
/**
 * @param {HTMLElement} button
 * @param {string} text
 */
function flash(button, text) {
  const before = button.textContent;
  button.textContent = text;
  setTimeout(() => (button.textContent = before), 1500);
}
