// The edgeroom operator console: one page, hash routes, plain DOM. Talks only to the admin API
// (`/v1/admin/...`) with the key the operator types in, kept in sessionStorage for this tab.
import uPlot from "uplot";

const KEY = "edgeroom.admin.key";
const TENANT = "edgeroom.admin.tenant";
const POLL_MS = 2000;
const CHART_POINTS = 150; // five minutes at one point per 2 s
const PAGE = 20;
const TAIL_REPLAY = 20; // events the tail shows from before the page opened

const app = document.getElementById("app");
let cleanup = []; // timers, sockets and charts of the current view

// ---------- small helpers ----------

/** Creates an element: h("div.card#id", {attrs}, ...children). Text is always text, never HTML. */
function h(spec, attrs = {}, ...children) {
  const [tag, ...tokens] = spec.split(/(?=[.#])/);
  const el = document.createElement(/^[.#]/.test(tag) ? "div" : tag);
  for (const token of /^[.#]/.test(tag) ? [tag, ...tokens] : tokens) {
    if (token[0] === "#") el.id = token.slice(1);
    else el.classList.add(token.slice(1));
  }
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value == null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const nf = new Intl.NumberFormat("en-US");
const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
function num(n) {
  if (n == null || Number.isNaN(n)) return "–";
  if (Math.abs(n) >= 1e6) return `${(n / 1e6).toFixed(n >= 1e7 ? 0 : 1)}M`;
  if (Math.abs(n) >= 1e4) return `${(n / 1e3).toFixed(n >= 1e5 ? 0 : 1)}k`;
  if (Number.isInteger(n)) return nf.format(n);
  return n < 10 ? n.toFixed(2) : nf.format(Math.round(n));
}
function bytes(n) {
  if (n == null) return "–";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}
function usd(n) {
  if (!n) return "$0.00";
  return n < 0.01 ? "< $0.01" : `$${n.toFixed(2)}`;
}
function ago(ms) {
  if (!ms) return "never";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 5) return "just now";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}
function when(ms) {
  return ms ? new Date(ms).toLocaleString() : "–";
}
function snapshotSeq(key) {
  const match = /\/(\d+)\.snap$/.exec(key ?? "");
  return match ? Number(match[1]) : null;
}
const UNITS = {
  worker_requests: ["Workers requests", "those that reached a room or counter; reads answered from KV are not seen"],
  object_requests: ["Object requests", "incl. WebSocket messages at 20:1 and alarms"],
  duration_gb_s: ["Duration", "GB-s, estimated"],
  rows_read: ["SQLite rows read", ""],
  rows_written: ["SQLite rows written", ""],
  kv_writes: ["KV writes", "read models"],
  kv_reads: ["KV reads", "REST reads at the router: not counted here (bench/cost.mjs counts them)"],
  d1_rows_written: ["D1 rows written", ""],
  r2_class_a: ["R2 class A ops", "snapshot writes"],
  r2_class_b: ["R2 class B ops", "the last snapshot read back to build the next"],
  queue_ops: ["Queue operations", "event export: 3 per message per 64 KB"],
};

function toast(text, kind = "ok") {
  const el = h("div.toast", { dataset: { kind } }, text);
  document.getElementById("toasts").append(el);
  setTimeout(() => el.remove(), kind === "error" ? 8000 : 4000);
}

/** Our own confirm dialog (not window.confirm): resolves true when the operator confirms. */
function confirmAction(title, text, okLabel) {
  const modal = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  const ok = document.getElementById("confirm-ok");
  const cancel = document.getElementById("confirm-cancel");
  ok.textContent = okLabel;
  modal.hidden = false;
  ok.focus();
  return new Promise((resolve) => {
    const done = (answer) => {
      modal.hidden = true;
      ok.onclick = cancel.onclick = modal.onclick = document.onkeydown = null;
      resolve(answer);
    };
    ok.onclick = () => done(true);
    cancel.onclick = () => done(false);
    modal.onclick = (e) => e.target === modal && done(false);
    document.onkeydown = (e) => e.key === "Escape" && done(false);
  });
}

// ---------- the admin API ----------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const session = {
  get key() {
    return sessionStorage.getItem(KEY);
  },
  get tenant() {
    return sessionStorage.getItem(TENANT) || "demo";
  },
};

async function api(path, { method = "GET", body, key = session.key } = {}) {
  let response;
  try {
    response = await fetch(`/v1/admin${path}`, {
      method,
      headers: { Authorization: `Bearer ${key}`, ...(body ? { "Content-Type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch {
    throw new ApiError(0, "network", "The server cannot be reached. Is wrangler dev running?");
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // not JSON
  }
  if (!response.ok) {
    const error = data?.error ?? {};
    if (response.status === 401 && key === session.key && session.key) {
      sessionStorage.removeItem(KEY);
      location.hash = "#/login";
      toast("The admin key was rejected; sign in again.", "error");
    }
    throw new ApiError(response.status, error.code ?? "http", error.message ?? `HTTP ${response.status}`);
  }
  return data;
}
const t = (tenant) => `/t/${encodeURIComponent(tenant)}`;
const r = (tenant, room) => `${t(tenant)}/rooms/${encodeURIComponent(room)}`;

// ---------- layout ----------

function shell(active, ...content) {
  const tenant = session.tenant;
  const tab = (id, label, href) => h("a.tab", { href, "aria-current": active === id ? "page" : null, dataset: { tab: id } }, label);
  const tenantForm = h(
    "form.tenant",
    {
      onsubmit: (e) => {
        e.preventDefault();
        const value = e.target.elements.tenant.value.trim();
        if (!/^[A-Za-z0-9._-]{1,128}$/.test(value)) return toast("A tenant name is 1-128 of A-Z a-z 0-9 . _ -", "error");
        sessionStorage.setItem(TENANT, value);
        location.hash = `#/t/${value}`;
      },
    },
    h("label.tenant-label", { for: "tenant-switch" }, "Tenant"),
    h("input.tenant-input#tenant-switch", { name: "tenant", value: tenant, autocomplete: "off", spellcheck: "false" }),
  );
  return h(
    "div.frame",
    {},
    h(
      "header.bar",
      {},
      h("a.brand", { href: `#/t/${tenant}` }, h("span.logo", { "aria-hidden": "true" }), h("span.brand-name", {}, "edgeroom"), h("span.badge", {}, "console")),
      h("nav.tabs", { "aria-label": "Sections" }, tab("overview", "Overview", `#/t/${tenant}`), tab("rooms", "Rooms", `#/t/${tenant}/rooms`), tab("counters", "Counters", `#/t/${tenant}/counters`)),
      h("div.bar-end", {}, tenantForm, h("button.btn.ghost#logout", { type: "button", onclick: logout }, "Sign out")),
    ),
    h("main.content", {}, ...content),
  );
}

function logout() {
  sessionStorage.removeItem(KEY);
  location.hash = "#/login";
}

function panel(title, extra, ...body) {
  return h("section.panel", {}, h("div.panel-head", {}, h("h2.panel-title", {}, title), extra), ...body);
}

function errorBox(error) {
  return h("div.error-box", { role: "alert" }, error.message);
}

// ---------- views ----------

function loginView() {
  const error = h("p.login-error#login-error", { role: "alert" });
  const form = h(
    "form.login-card#login",
    {
      onsubmit: async (e) => {
        e.preventDefault();
        const key = form.elements.key.value;
        const tenant = form.elements.tenant.value.trim() || "demo";
        error.textContent = "";
        if (!/^[A-Za-z0-9._-]{1,128}$/.test(tenant)) {
          error.textContent = "A tenant name is 1 to 128 characters of A-Z a-z 0-9 . _ -";
          return;
        }
        const button = form.querySelector("button");
        button.disabled = true;
        button.textContent = "Signing in…";
        try {
          await api(t(tenant), { key });
          sessionStorage.setItem(KEY, key);
          sessionStorage.setItem(TENANT, tenant);
          location.hash = `#/t/${tenant}`;
        } catch (err) {
          error.textContent =
            err.status === 401 ? "That admin key was not accepted. Check ADMIN_KEY in .dev.vars (or your Worker's secret)." : err.message;
          form.elements.key.select();
        } finally {
          button.disabled = false;
          button.textContent = "Sign in";
        }
      },
    },
    h("div.login-brand", {}, h("span.logo.big", { "aria-hidden": "true" }), h("div", {}, h("h1.login-title", {}, "edgeroom console"), h("p.muted", {}, "Rooms, live metrics, cost and snapshots."))),
    h("input", { type: "text", name: "username", value: "admin", autocomplete: "username", hidden: true, "aria-hidden": "true", tabindex: "-1" }),
    h("label.field", {}, h("span", {}, "Admin key"), h("input#key", { name: "key", type: "password", required: true, autocomplete: "current-password", placeholder: "ADMIN_KEY" })),
    h("label.field", {}, h("span", {}, "Tenant"), h("input#tenant", { name: "tenant", value: session.tenant, autocomplete: "off", spellcheck: "false" })),
    error,
    h("button.btn.primary.wide#sign-in", { type: "submit" }, "Sign in"),
    h("p.fine", {}, "The key stays in this tab (sessionStorage) and is sent only to this server's admin API."),
  );
  app.replaceChildren(h("div.login-wrap", {}, form));
  form.elements.key.focus();
}

function costBody(cost, note) {
  const per1000 = cost.per_1000_deliveries;
  const rows = cost.estimate.lines.map((line) => {
    const [label, hint] = UNITS[line.unit] ?? [line.unit, ""];
    const share = line.free_share;
    return h(
      "tr",
      { dataset: { unit: line.unit } },
      h("td", { "data-label": "Unit" }, h("div.unit", {}, label), hint ? h("div.hint", {}, hint) : null),
      h("td.num", { "data-label": "Per day" }, num(line.per_day)),
      h("td.num.allowance", { "data-label": "Free per day" }, line.price ? num(Math.round(line.price.free_per_day)) : "–"),
      h("td.share", { "data-label": "Free plan share" }, h("div.meter", { title: `${(share * 100).toFixed(2)}% of the free plan's daily allowance` }, h("span", { style: `width:${Math.min(100, share * 100)}%`, dataset: { over: share > 1 ? "yes" : "no" } })), h("span.pct", {}, share >= 0.001 || share === 0 ? `${(share * 100).toFixed(share < 0.1 ? 1 : 0)}%` : "< 0.1%")),
      h("td.num", { "data-label": "Paid $/month" }, usd(line.paid_usd_per_month)),
      h("td.num", { "data-label": "Per 1,000 deliveries" }, per1000 ? num(per1000[line.unit]) : "–"),
    );
  });
  const fits = cost.estimate.fits_free_plan;
  return h(
    "div.cost-body",
    {},
    h(
      "div.kpis",
      {},
      h("div.kpi#paid-month", {}, h("div.kpi-label", {}, "Paid plan, per month"), h("div.kpi-value", {}, usd(cost.estimate.paid_usd_per_month)), h("div.kpi-hint", {}, "beyond the included amounts")),
      h("span.pill", { dataset: { tone: fits ? "ok" : "warn" } }, fits ? "Fits the free plan" : "Over the free plan"),
    ),
    h("p.muted.small", {}, note),
    h(
      "div.table-wrap",
      {},
      h(
        "table.table.cost",
        {},
        h("thead", {}, h("tr", {}, h("th", {}, "Billable unit"), h("th.num", {}, "Per day"), h("th.num", {}, "Free per day"), h("th", {}, "Free plan share"), h("th.num", {}, "Paid $/month"), h("th.num", {}, "Per 1,000 deliveries"))),
        h("tbody", {}, rows),
      ),
    ),
  );
}

async function overviewView(tenant) {
  const view = routes;
  app.replaceChildren(shell("overview", h("div.loading", {}, "Loading…")));
  let overview, top;
  try {
    [overview, top] = await Promise.all([api(t(tenant)), api(`${t(tenant)}/rooms?sort=activity&limit=5`)]);
  } catch (error) {
    if (view === routes) app.replaceChildren(shell("overview", errorBox(error)));
    return;
  }
  // The operator moved on while this loaded: the newer view stays.
  if (view !== routes) return;
  const a = overview.activity ?? {};
  const refusals = Object.values(a.refusals ?? {}).reduce((x, y) => x + y, 0);
  const stat = (id, label, value, hint) => h("div.stat", { dataset: { stat: id } }, h("div.stat-label", {}, label), h("div.stat-value", {}, value), hint ? h("div.stat-hint", {}, hint) : null);
  app.replaceChildren(
    shell(
      "overview",
      h("div.page-head", {}, h("h1.page-title", {}, "Overview"), h("span.muted", {}, `Tenant `, h("strong#tenant-name", {}, overview.tenant), " · last 24 hours, from the flushed metrics")),
      h(
        "div.stats",
        {},
        stat("rooms", "Rooms", num(overview.rooms), "in the index"),
        stat("events", "Messages", num(a.events ?? 0), "events appended"),
        stat("deliveries", "Deliveries", num(a.deliveries ?? 0), "events × recipients"),
        stat("frames", "Frames in / out", `${num(a.frames_in ?? 0)} / ${num(a.frames_out ?? 0)}`, `${bytes(a.bytes_in ?? 0)} in · ${bytes(a.bytes_out ?? 0)} out`),
        stat("flushes", "Flushes", num(a.flushes_ok ?? 0), a.flushes_failed ? `${a.flushes_failed} failed` : "none failed"),
        stat("counter-writes", "Counter writes", num(overview.counter_activity?.events ?? 0), `${num(overview.counter_activity?.frames_out ?? 0)} counter frames out`),
        stat("refusals", "Refusals", num(refusals), refusals ? Object.entries(a.refusals).map(([k, v]) => `${k} ${v}`).join(", ") : "no refused frames"),
      ),
      h(
        "div.grid-overview",
        {},
        panel("Cost", null, costBody(overview.cost, "The last day's billable units over all rooms and counters, projected to a 30-day month on Cloudflare's free and paid plans (prices: durable/src/pricing.rs; a measured model of whole days: docs/cost.md).")),
        panel(
          "Most active rooms",
          h("a.link", { href: `#/t/${tenant}/rooms` }, "All rooms →"),
          top.length
            ? h(
                "ul.top-rooms",
                {},
                top.map((room) =>
                  h("li", {}, h("a.room-link", { href: `#/t/${tenant}/rooms/${encodeURIComponent(room.room)}` }, room.room), h("span.muted.small", {}, `seq ${num(room.seq)} · ${room.members} here · ${ago(room.last_activity_ms)}`)),
                ),
              )
            : h("p.empty", {}, "No rooms yet. Rooms appear here after their first flush."),
        ),
      ),
    ),
  );
}

async function roomsView(tenant, params) {
  const sort = params.get("sort") || "activity";
  const q = params.get("q") || "";
  const page = Math.max(0, Number(params.get("page")) || 0);
  const go = (changes) => {
    const next = new URLSearchParams({ sort, q, page: String(page), ...changes });
    if (!next.get("q")) next.delete("q");
    if (next.get("page") === "0") next.delete("page");
    location.hash = `#/t/${tenant}/rooms?${next}`;
  };
  const search = h("input.search#room-search", { type: "search", placeholder: "Search rooms", value: q, "aria-label": "Search rooms", autocomplete: "off" });
  let debounce;
  search.addEventListener("input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => go({ q: search.value.trim(), page: "0" }), 300);
  });
  const sortSelect = h(
    "select#room-sort",
    { "aria-label": "Sort by", onchange: (e) => go({ sort: e.target.value, page: "0" }) },
    [["activity", "Last activity"], ["name", "Name"], ["members", "Members"], ["size", "Size"]].map(([value, label]) => h("option", { value, selected: value === sort }, label)),
  );
  const tbody = h("tbody#rooms-body");
  const pager = h("div.pager");
  const refresh = h("button.btn#rooms-refresh", { type: "button", onclick: () => load() }, "Refresh");
  const table = h(
    "div.table-wrap",
    {},
    h(
      "table.table.rooms",
      {},
      h("thead", {}, h("tr", {}, h("th", {}, "Room"), h("th.num", {}, "Seq"), h("th.num", {}, "Members"), h("th", {}, "Last activity"), h("th.num", {}, "Size"), h("th", {}, "Last snapshot"))),
      tbody,
    ),
  );
  app.replaceChildren(
    shell(
      "rooms",
      h("div.page-head", {}, h("h1.page-title", {}, "Rooms"), h("span.muted", {}, `Tenant ${tenant} · from the D1 index, updated by each flush`)),
      h("section.panel", {}, h("div.toolbar", {}, search, h("label.sort", {}, h("span.muted.small", {}, "Sort"), sortSelect), refresh), table, pager),
    ),
  );
  if (q) {
    search.focus();
    search.setSelectionRange(q.length, q.length);
  }
  let loads = 0;
  async function load() {
    // Overlapping refreshes can answer out of order: only the newest one renders.
    const mine = ++loads;
    let rooms;
    try {
      rooms = await api(`${t(tenant)}/rooms?${new URLSearchParams({ sort, q, limit: String(PAGE + 1), offset: String(page * PAGE) })}`);
    } catch (error) {
      if (mine === loads) tbody.replaceChildren(h("tr", {}, h("td.empty", { colspan: "6" }, error.message)));
      return;
    }
    if (mine !== loads) return;
    const more = rooms.length > PAGE;
    rooms = rooms.slice(0, PAGE);
    tbody.replaceChildren(
      ...(rooms.length
        ? rooms.map((room) => {
            const href = `#/t/${tenant}/rooms/${encodeURIComponent(room.room)}`;
            const snap = snapshotSeq(room.last_snapshot_key);
            return h(
              "tr.row",
              { dataset: { room: room.room }, onclick: (e) => e.target.tagName !== "A" && (location.hash = href) },
              h("td", { "data-label": "Room" }, h("a.room-link", { href }, room.room)),
              h("td.num", { "data-label": "Seq" }, num(room.seq)),
              h("td.num", { "data-label": "Members" }, room.members ? h("span.pill", { dataset: { tone: "ok" } }, String(room.members)) : "0"),
              h("td", { "data-label": "Last activity", title: when(room.last_activity_ms) }, ago(room.last_activity_ms)),
              h("td.num", { "data-label": "Size" }, bytes(room.last_snapshot_bytes)),
              h("td", { "data-label": "Last snapshot", title: room.last_snapshot_key ?? "" }, snap != null ? `seq ${num(snap)}` : "none"),
            );
          })
        : [h("tr", {}, h("td.empty", { colspan: "6" }, q ? `No room matches “${q}”.` : "No rooms yet. A room is listed after its first flush."))]),
    );
    pager.replaceChildren(
      h("button.btn#prev-page", { type: "button", disabled: page === 0, onclick: () => go({ page: String(page - 1) }) }, "← Previous"),
      h("span.muted.small", {}, rooms.length ? `Rooms ${page * PAGE + 1}–${page * PAGE + rooms.length}` : ""),
      h("button.btn#next-page", { type: "button", disabled: !more, onclick: () => go({ page: String(page + 1) }) }, "Next →"),
    );
  }
  await load();
  every(5000, load);
}

/** Runs `fn` every `ms` while this view is shown and the tab is visible. */
function every(ms, fn) {
  const timer = setInterval(() => document.visibilityState === "visible" && fn(), ms);
  cleanup.push(() => clearInterval(timer));
}

function chart(target, label, color, tone) {
  const value = h("span.chart-value", {}, "–");
  const box = h("div.chart-plot");
  const card = h("div.chart", { dataset: { chart: tone, points: "0", peak: "0" } }, h("div.chart-head", {}, h("span.chart-label", {}, label), value), box);
  target.append(card);
  const data = [[], []];
  const opts = {
    width: 300,
    height: 140,
    legend: { show: false },
    cursor: { show: true, points: { size: 6 } },
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.15)] } },
    axes: [
      { stroke: "#6b7080", grid: { stroke: "#eef0f4" }, ticks: { stroke: "#eef0f4" }, font: "11px system-ui", space: 70, values: (u, ticks) => ticks.map((v) => clock.format(new Date(v * 1000))) },
      { stroke: "#6b7080", grid: { stroke: "#eef0f4" }, ticks: { stroke: "#eef0f4" }, font: "11px system-ui", size: 42 },
    ],
    series: [{}, { label, stroke: color, width: 2, fill: `${color}22`, points: { show: false } }],
  };
  const plot = new uPlot(opts, data, box);
  const resize = () => plot.setSize({ width: Math.max(200, box.clientWidth), height: 140 });
  const observer = new ResizeObserver(resize);
  observer.observe(box);
  cleanup.push(() => {
    observer.disconnect();
    plot.destroy();
  });
  return {
    push(at, y, text) {
      data[0].push(at / 1000);
      data[1].push(y);
      if (data[0].length > CHART_POINTS) {
        data[0].shift();
        data[1].shift();
      }
      plot.setData(data);
      value.textContent = text;
      card.dataset.points = String(data[0].length);
      card.dataset.peak = String(Math.max(Number(card.dataset.peak), y));
      card.dataset.last = String(y);
    },
  };
}

function memberName(member) {
  const data = member.data;
  if (data && typeof data === "object" && typeof data.name === "string") return data.name;
  return member.user ?? `connection ${member.connection_id}`;
}

function preview(value, max = 160) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

async function roomView(tenant, room) {
  const base = r(tenant, room);
  const status = h("span.status#tail-status", { dataset: { status: "connecting" } }, h("span.dot", { "aria-hidden": "true" }), h("span.status-text", {}, "Tail connecting…"));
  const facts = h("div.facts#room-facts");
  const charts = h("div.charts#charts");
  const members = h("ul.members#members");
  const memberCount = h("span.count#member-count", {}, "0");
  const tail = h("ol.tail#tail", {}, h("li.empty", {}, "Waiting for events… Publish something in this room."));
  const state = h("div#state");
  const snapshots = h("div#snapshots");
  const cost = h("div#room-cost");
  const windowSelect = h("select#cost-window", { "aria-label": "Cost window", onchange: () => loadSlow() }, [
    ["300000", "Last 5 minutes"],
    ["3600000", "Last hour"],
    ["86400000", "Last 24 hours"],
  ].map(([value, label]) => h("option", { value, selected: value === "3600000" }, label)));

  const act = async (title, text, ok, path, body, done) => {
    if (!(await confirmAction(title, text, ok))) return;
    try {
      const result = await api(`${base}/${path}`, { method: "POST", body });
      done(result);
      loadSlow();
    } catch (error) {
      toast(`${ok} failed: ${error.message}`, "error");
    }
  };
  const flush = () => act("Flush this room now?", `Writes a snapshot of ${room} to R2, its index row to D1 and its read model to KV (one write each).`, "Flush now", "flush", undefined, () => toast("Flushed: a new snapshot is listed below."));
  const closeAll = () =>
    act("Close every connection?", `Every client in ${room} is disconnected with close code 4014 (clients may reconnect).`, "Close all", "close", undefined, (res) => toast(`Closed ${res.affected} connection${res.affected === 1 ? "" : "s"}.`));

  app.replaceChildren(
    shell(
      "rooms",
      h(
        "div.page-head.room-head",
        {},
        h("div.crumbs", {}, h("a.link", { href: `#/t/${tenant}/rooms` }, "Rooms"), h("span.muted", {}, " / "), h("h1.page-title#room-title", {}, room)),
        h("div.actions", {}, status, h("button.btn#flush", { type: "button", onclick: flush }, "Flush now"), h("button.btn.danger-outline#close-all", { type: "button", onclick: closeAll }, "Close all")),
      ),
      facts,
      panel("Live", h("span.muted.small", {}, "polled every 2 s"), charts),
      h(
        "div.grid2",
        {},
        panel(h("span", {}, "Members ", memberCount), null, members),
        panel("Event tail", h("span.muted.small", {}, "read-only socket"), h("div.tail-scroll", {}, tail)),
      ),
      h("div.grid2", {}, panel("Shared state", null, state), panel("Snapshots", h("span.muted.small", {}, "R2, newest first"), snapshots)),
      h("section.panel", {}, h("div.panel-head", {}, h("h2.panel-title", {}, "Room cost"), windowSelect), cost),
    ),
  );

  const messages = chart(charts, "Messages / s", "#4f46e5", "messages");
  const deliveries = chart(charts, "Deliveries / s", "#0891b2", "deliveries");
  const connections = chart(charts, "Connections", "#16a34a", "connections");

  // Live metrics: poll and chart the differences between readings.
  let previous = null;
  let lastMembersKey = "";
  async function poll() {
    let data;
    try {
      data = await api(`${base}/metrics?window_ms=${windowSelect.value}`);
    } catch (error) {
      facts.replaceChildren(errorBox(error));
      return;
    }
    const live = data.live;
    const m = live.metrics;
    if (previous) {
      const seconds = Math.max(0.001, (live.generated_ms - previous.generated_ms) / 1000);
      const rate = (field) => Math.max(0, (m[field] - previous.metrics[field]) / seconds);
      const msg = rate("events");
      const del = rate("deliveries");
      messages.push(live.generated_ms, msg, `${num(msg)}/s`);
      deliveries.push(live.generated_ms, del, `${num(del)}/s`);
    }
    connections.push(live.generated_ms, live.connections, String(live.connections));
    previous = live;
    const fact = (label, value, id) => h("div.fact", { dataset: { fact: id } }, h("span.fact-label", {}, label), h("span.fact-value", {}, value));
    facts.replaceChildren(
      fact("Seq", num(live.seq), "seq"),
      fact("Epoch", live.epoch || "–", "epoch"),
      fact("Connections", `${live.connections} (peak ${m.connections_peak ?? 0})`, "connections"),
      fact("Messages", num(m.events), "events"),
      fact("Deliveries", num(m.deliveries), "deliveries"),
      fact("Frames in / out", `${num(m.frames_in)} / ${num(m.frames_out)}`, "frames"),
      fact("Rows written", num(m.rows_written), "rows"),
      fact("Flushes", `${num(m.flushes_ok)}${m.flushes_failed ? ` (${m.flushes_failed} failed)` : ""}`, "flushes"),
    );
    const key = JSON.stringify(live.members);
    if (key !== lastMembersKey) {
      lastMembersKey = key;
      memberCount.textContent = String(live.members.length);
      members.replaceChildren(
        ...(live.members.length
          ? live.members.map((member) => {
              const name = memberName(member);
              return h(
                "li.member",
                { dataset: { connection: String(member.connection_id) } },
                h("span.avatar", { style: `background:${hue(name)}` }, name.slice(0, 1).toUpperCase()),
                h("div.member-main", {}, h("div.member-name", {}, name), h("div.muted.small", {}, `#${member.connection_id}${member.user ? ` · ${member.user}` : ""}${member.data != null ? ` · ${preview(member.data, 60)}` : ""}`)),
                h(
                  "button.btn.small.danger-outline.kick",
                  {
                    type: "button",
                    "aria-label": `Kick ${name}`,
                    onclick: () =>
                      act(`Kick ${name}?`, `Connection #${member.connection_id} is closed with code 4013. The client may reconnect.`, "Kick", "kick", { connection_id: member.connection_id }, () =>
                        toast(`Kicked connection #${member.connection_id}.`),
                      ),
                  },
                  "Kick",
                ),
              );
            })
          : [h("li.empty", {}, "Nobody is here. (The console's tail is a read-only watcher, not a member.)")]),
      );
    }
    cost.replaceChildren(costBody(data.cost, "This room's flushed activity in the chosen window, projected to a day and a 30-day month."));
  }

  // Slower: shared state and snapshots.
  async function loadSlow() {
    const [view, snaps] = await Promise.allSettled([api(base), api(`${base}/snapshots`)]);
    if (view.status === "fulfilled") {
      const entries = Object.entries(view.value.state ?? {});
      state.replaceChildren(
        entries.length
          ? h("dl.kv", {}, entries.map(([key, value]) => [h("dt", {}, key), h("dd", {}, h("code", {}, preview(value, 400)))]))
          : h("p.empty", {}, "No shared state."),
      );
    } else state.replaceChildren(errorBox(view.reason));
    if (snaps.status === "fulfilled") renderSnapshots(snaps.value);
    else snapshots.replaceChildren(errorBox(snaps.reason));
  }
  function renderSnapshots(list) {
    snapshots.replaceChildren(
      list.length
        ? h(
            "div.table-wrap",
            {},
            h(
              "table.table.snapshots",
              {},
              h("thead", {}, h("tr", {}, h("th.num", {}, "Seq"), h("th", {}, "Taken"), h("th.num", {}, "Size"), h("th", {}, "In R2"), h("th", {}, ""))),
              h(
                "tbody#snapshots-body",
                {},
                list.map((snap) =>
                  h(
                    "tr",
                    { dataset: { seq: String(snap.seq) } },
                    h("td.num", {}, num(snap.seq)),
                    h("td", { title: when(snap.created_ms) }, ago(snap.created_ms)),
                    h("td.num", {}, bytes(snap.bytes)),
                    h("td", {}, snap.in_r2 ? h("span.pill", { dataset: { tone: "ok" } }, "verified") : h("span.pill", { dataset: { tone: "bad" } }, "missing")),
                    h(
                      "td.right",
                      {},
                      h(
                        "button.btn.small.restore",
                        {
                          type: "button",
                          disabled: !snap.in_r2,
                          onclick: () =>
                            act(
                              `Restore seq ${snap.seq}?`,
                              `The room's state and history are replaced by this snapshot's; the room starts a new epoch and connected clients get a fresh welcome and a gap.`,
                              "Restore",
                              "restore",
                              { seq: snap.seq },
                              (res) => toast(`Restored the snapshot of seq ${res.restored_seq}; the room is at seq ${res.seq}.`),
                            ),
                        },
                        "Restore",
                      ),
                    ),
                  ),
                ),
              ),
            ),
          )
        : h("p.empty", {}, "No snapshots yet. Flush the room to take one."),
    );
  }

  // The tail: the admin read-only socket (the key goes in the query, browsers cannot set headers).
  let socket = null;
  let retry = null;
  let closed = false;
  let shown = 0;
  let lastSeq = null; // the newest event the tail showed; a reconnect resumes after it
  let epoch = null;
  let welcomed = false;
  let pending = null; // live events that arrive while earlier ones are fetched
  // The tail socket takes no resume_from: earlier events (the last few when the page opens, the
  // missed ones after a reconnect) come from the history route, with a short read-only token.
  async function backfill(after, upTo) {
    if (upTo <= after) return;
    try {
      const { token } = await api(`${t(tenant)}/tokens`, { method: "POST", body: { sub: "edgeroom-console", rooms: [{ room, rights: ["read"] }], ttl_secs: 300 } });
      const response = await fetch(`/v1${base}/history?after=${after}&limit=${Math.min(100, upTo - after)}`, { headers: { Authorization: `Bearer ${token}` } });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const page = await response.json();
      for (const event of page.events) if (event.seq <= upTo) showEvent(event);
    } catch (error) {
      addTail(h("li.tail-note", {}, `Earlier events could not be loaded (${error.message})`));
    }
  }
  const addTail = (item) => {
    if (!shown) tail.replaceChildren();
    tail.prepend(item);
    shown += 1;
    while (tail.children.length > 200) tail.lastChild.remove();
  };
  const showEvent = (event) => {
    if (lastSeq != null && event.seq <= lastSeq) return;
    lastSeq = event.seq;
    const label = event.kind === "message" ? (event.topic ? `message · ${event.topic}` : "message") : `${event.kind} ${event.key ?? ""}`;
    addTail(
      h(
        "li.tail-item",
        { dataset: { seq: String(event.seq), kind: event.kind } },
        h("span.tail-seq", {}, `#${event.seq}`),
        h("span.tail-kind", {}, label),
        h("code.tail-body", {}, event.body === null ? "null" : preview(event.body, 300)),
        h("span.tail-from", {}, event.sender == null ? "server" : `conn ${event.sender}`),
      ),
    );
  };
  const setStatus = (value, text) => {
    status.dataset.status = value;
    status.querySelector(".status-text").textContent = text;
  };
  function connect() {
    const url = new URL(`/v1/admin${base}/tail`, location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("format", "json");
    url.searchParams.set("admin_key", session.key);
    socket = new WebSocket(url);
    const heartbeat = setInterval(() => socket.readyState === 1 && socket.send("ping"), 20000);
    socket.onopen = () => setStatus("connected", "Tail live");
    socket.onmessage = (message) => {
      if (typeof message.data !== "string" || message.data === "pong") return;
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        return;
      }
      if (frame.type === "event") (pending ?? { push: showEvent }).push(frame);
      else if (frame.type === "events") frame.events.forEach((event) => (pending ?? { push: showEvent }).push(event));
      else if (frame.type === "welcome") {
        const restored = welcomed && epoch && frame.epoch && frame.epoch !== epoch;
        let from = null;
        if (!welcomed) from = Math.max(0, frame.seq - TAIL_REPLAY);
        else if (!restored && lastSeq != null) from = lastSeq; // a reconnect: fetch what was missed
        if (!welcomed) addTail(h("li.tail-note", {}, `Tail opened at seq ${frame.seq}${frame.epoch ? ` · epoch ${frame.epoch}` : ""}`));
        else if (restored) {
          addTail(h("li.tail-note", {}, `History replaced (restore): now at seq ${frame.seq} · epoch ${frame.epoch}`));
          lastSeq = frame.seq;
        }
        welcomed = true;
        epoch = frame.epoch || epoch;
        if (from != null && frame.seq > from) {
          const queue = (pending = []);
          backfill(from, frame.seq).finally(() => {
            if (pending === queue) pending = null;
            queue.forEach(showEvent);
          });
        }
        loadSlow();
      } else if (frame.type === "gap") {
        if (frame.seq > frame.resume_from) addTail(h("li.tail-note", {}, `Events ${frame.resume_from + 1}–${frame.seq} are not replayed (no longer in history)`));
        lastSeq = frame.seq;
      }
    };
    socket.onclose = (e) => {
      clearInterval(heartbeat);
      if (closed) return;
      setStatus("reconnecting", e.code === 4014 ? "Tail closed by Close all, reconnecting…" : "Tail reconnecting…");
      retry = setTimeout(connect, 2000);
    };
  }
  cleanup.push(() => {
    closed = true;
    clearTimeout(retry);
    socket?.close(1000);
  });

  connect();
  await Promise.all([poll(), loadSlow()]);
  every(POLL_MS, poll);
}

function hue(name) {
  let n = 0;
  for (const c of name) n = (n * 31 + c.codePointAt(0)) % 360;
  return `hsl(${n} 55% 48%)`;
}

async function countersView(tenant) {
  const tbody = h("tbody#counters-body");
  const costPanel = h("div#counter-cost", {}, h("p.muted.small", {}, "Pick a counter's Cost to see what it spent over the last day."));
  async function showCost(name) {
    costPanel.replaceChildren(h("div.loading", {}, "Loading…"));
    try {
      const data = await api(`${t(tenant)}/counters/${encodeURIComponent(name)}/metrics?window_ms=86400000`);
      const live = data.live;
      costPanel.replaceChildren(
        h("p.small", {}, h("strong", {}, name), ` · ${live.shards} shard${live.shards === 1 ? "" : "s"} · ${num(live.subscribers)} live subscribers · ${num(live.metrics.events ?? 0)} writes and ${num(live.metrics.frames_out ?? 0)} frames out counted so far`),
        costBody(data.cost, "This counter's flushed activity over the last day (all shards), projected to a 30-day month."),
      );
    } catch (error) {
      costPanel.replaceChildren(errorBox(error));
    }
  }
  app.replaceChildren(
    shell(
      "counters",
      h("div.page-head", {}, h("h1.page-title", {}, "Counters"), h("span.muted", {}, `Tenant ${tenant} · values as last flushed to D1`)),
      h(
        "section.panel",
        {},
        h("div.toolbar", {}, h("span.muted.small", {}, "Exact signed 64-bit values; a reset applies to every shard."), h("button.btn#counters-refresh", { type: "button", onclick: () => load() }, "Refresh")),
        h("div.table-wrap", {}, h("table.table.counters", {}, h("thead", {}, h("tr", {}, h("th", {}, "Counter"), h("th.num", {}, "Value"), h("th.num", {}, "Version"), h("th", {}, "Updated"), h("th", {}, ""))), tbody)),
      ),
      h("section.panel", {}, h("div.panel-head", {}, h("h2.panel-title", {}, "Counter cost")), costPanel),
    ),
  );
  let loads = 0;
  async function load() {
    // Overlapping refreshes can answer out of order: only the newest one renders (an older list
    // would also undo a reset shown in the table).
    const mine = ++loads;
    let counters;
    try {
      counters = await api(`${t(tenant)}/counters`);
    } catch (error) {
      if (mine === loads) tbody.replaceChildren(h("tr", {}, h("td.empty", { colspan: "5" }, error.message)));
      return;
    }
    if (mine !== loads) return;
    tbody.replaceChildren(
      ...(counters.length
        ? counters.map((counter) =>
            h(
              "tr",
              { dataset: { counter: counter.name } },
              h("td", { "data-label": "Counter" }, h("strong", {}, counter.name)),
              h("td.num.value", { "data-label": "Value" }, counter.value),
              h("td.num", { "data-label": "Version" }, counter.version),
              h("td", { "data-label": "Updated", title: when(counter.updated_ms) }, ago(counter.updated_ms)),
              h(
                "td.right",
                {},
                h("button.btn.small.cost", { type: "button", onclick: () => showCost(counter.name) }, "Cost"),
                " ",
                h(
                  "button.btn.small.danger-outline.reset",
                  {
                    type: "button",
                    onclick: async () => {
                      if (!(await confirmAction(`Reset ${counter.name}?`, `Sets ${counter.name} back to 0 on every shard. Live subscribers see the new value.`, "Reset"))) return;
                      try {
                        const result = await api(`${t(tenant)}/counters/${encodeURIComponent(counter.name)}/reset`, { method: "POST" });
                        toast(`Reset ${counter.name} (version ${result.version}).`);
                        const row = tbody.querySelector(`tr[data-counter="${CSS.escape(counter.name)}"] .value`);
                        if (row) row.textContent = String(result.value);
                      } catch (error) {
                        toast(`Reset failed: ${error.message}`, "error");
                      }
                    },
                  },
                  "Reset",
                ),
              ),
            ),
          )
        : [h("tr", {}, h("td.empty", { colspan: "5" }, "No counters yet. A counter is listed after its first flush."))]),
    );
  }
  await load();
}

// ---------- routing ----------

/** Counts navigations: a view that finishes loading after the next one started does not render. */
let routes = 0;

async function route() {
  routes++;
  for (const fn of cleanup.splice(0)) fn();
  const [path, query = ""] = location.hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  if (!session.key || parts[0] === "login") return loginView();
  if (parts[0] !== "t" || !parts[1]) {
    location.hash = `#/t/${session.tenant}`;
    return;
  }
  const tenant = parts[1];
  sessionStorage.setItem(TENANT, tenant);
  document.title = `edgeroom · ${tenant}`;
  if (parts[2] === "rooms" && parts[3]) return roomView(tenant, parts[3]);
  if (parts[2] === "rooms") return roomsView(tenant, new URLSearchParams(query));
  if (parts[2] === "counters") return countersView(tenant);
  return overviewView(tenant);
}

window.addEventListener("hashchange", () => route().catch((error) => toast(error.message, "error")));
route().catch((error) => toast(error.message, "error"));
