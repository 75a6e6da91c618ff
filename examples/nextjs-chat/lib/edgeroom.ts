// Server-side reads of edgeroom, over the EDGEROOM service binding (Worker to Worker, no public
// round trip), with a short read-only token signed here. Server-only.
import "server-only";
import type { EdgeroomConfig } from "./config";
import { reactionsCounter } from "./names";
import { signToken } from "./token";
import type { ChatMessage, Json, Member, RoomSnapshot } from "./types";

/** How many events before the room view's `seq` are scanned for the last messages. */
const HISTORY_WINDOW = 200;
/** How many messages the page shows at most. */
const MAX_MESSAGES = 50;
/** Events per history request (edgeroom allows up to 1,000). */
const PAGE_LIMIT = 500;
/** History requests per render at most; the browser resumes from wherever the render stopped. */
const MAX_PAGES = 4;

/** `GET /v1/t/{tenant}/rooms/{room}`: the room view (KV read model first). */
interface RoomView {
  tenant: string;
  room: string;
  seq: number;
  epoch: string;
  state: Record<string, Json>;
  members: Member[];
  generated_ms: number;
}

/** One event of `GET …/history`. */
interface HistoryEvent {
  seq: number;
  kind: "message" | "state_set" | "state_delete";
  body: Json;
  sender: number | null;
  topic: string | null;
  key: string | null;
}

/** `GET /v1/t/{tenant}/rooms/{room}/history?after=N&limit=M`. */
interface HistoryPage {
  events: HistoryEvent[];
  seq: number;
  epoch: string;
  oldest: number | null;
}

/** `GET /v1/t/{tenant}/counters/{name}`. */
interface CounterView {
  value: number;
  version: number;
}

/** edgeroom answered with an error (its JSON `{"error":{"code","message"}}`), or could not be reached. */
export class EdgeroomRequestError extends Error {
  override name = "EdgeroomRequestError";
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

async function get<T>(config: EdgeroomConfig, path: string, token: string): Promise<{ body: T; headers: Headers }> {
  let response: Response;
  try {
    // The host is ignored by a service binding; the path and headers reach edgeroom's router.
    response = await config.service.fetch(new Request(`https://edgeroom.internal${path}`, {
      headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
    }));
  } catch (error) {
    throw new EdgeroomRequestError(502, "unreachable", `edgeroom is not reachable through the EDGEROOM binding (is its Worker running?): ${String(error)}`);
  }
  if (!response.ok) {
    const text = await response.text();
    let code = "http_" + response.status;
    let message = text.slice(0, 300);
    try {
      const parsed = JSON.parse(text) as { error?: { code?: string; message?: string } };
      code = parsed.error?.code ?? code;
      message = parsed.error?.message ?? message;
    } catch {
      // not JSON: keep the text
    }
    throw new EdgeroomRequestError(response.status, code, `GET ${path.split("?")[0]}: ${response.status} ${code}: ${message}`);
  }
  return { body: (await response.json()) as T, headers: response.headers };
}

/**
 * The room as of one event: its state, members, last messages and reactions, and the `(epoch, seq)`
 * the browser resumes from, so every later event arrives once and none is shown twice.
 *
 * The view (state, members) comes from edgeroom's KV read model and may be a little behind; the
 * history page (from the room) brings it forward: state events after the view's `seq` are applied,
 * and the page's last event is the position rendered. When the two do not fit together (another
 * epoch, or history no longer reaches back to the view), it reads the room's view directly.
 */
export async function loadRoom(config: EdgeroomConfig, room: string, user: string): Promise<RoomSnapshot> {
  const counter = reactionsCounter(room);
  const { token } = await signToken(
    { sub: user, tenant: config.tenant, rooms: [{ room, rights: ["read"] }, { room: counter, rights: ["read"] }], ttlSeconds: 60 },
    config.key,
  );
  const base = `/v1/t/${encodeURIComponent(config.tenant)}`;
  const roomPath = `${base}/rooms/${encodeURIComponent(room)}`;
  const reactions = get<CounterView>(config, `${base}/counters/${encodeURIComponent(counter)}`, token);
  reactions.catch(() => undefined); // awaited below; this only keeps an early failure from being "unhandled"

  for (const consistency of ["eventual", "strong"] as const) {
    const { body: view, headers } = await get<RoomView>(config, `${roomPath}?consistency=${consistency}`, token);
    const events: HistoryEvent[] = [];
    let after = Math.max(0, view.seq - HISTORY_WINDOW);
    let page: HistoryPage | undefined;
    for (let i = 0; i < MAX_PAGES; i++) {
      page = (await get<HistoryPage>(config, `${roomPath}/history?after=${after}&limit=${PAGE_LIMIT}`, token)).body;
      events.push(...page.events);
      const last = page.events.at(-1)?.seq;
      if (last === undefined || last >= page.seq) break;
      after = last;
    }
    if (!page) break;
    const sameEpoch = !view.epoch || view.epoch === page.epoch;
    // Every event after the view must be at hand to bring its state forward.
    const reachesView =
      view.seq === page.seq || (view.seq < page.seq && page.oldest !== null && page.oldest <= view.seq + 1);
    if (!sameEpoch || !reachesView) continue;

    const state = { ...view.state };
    let seq = view.seq;
    for (const event of events) {
      if (event.seq <= view.seq) continue;
      if (event.seq !== seq + 1) break; // never skip an event: resume from before the hole
      seq = event.seq;
      if (event.kind === "state_set" && event.key !== null) state[event.key] = event.body;
      if (event.kind === "state_delete" && event.key !== null) delete state[event.key];
    }
    const messages: ChatMessage[] = events
      .filter((event) => event.kind === "message" && event.seq <= seq)
      .slice(-MAX_MESSAGES)
      .map(({ seq, body, sender }) => ({ seq, body, sender }));
    const counterView = (await reactions).body;
    return {
      tenant: config.tenant,
      room,
      seq,
      epoch: page.epoch,
      state,
      members: view.members,
      messages,
      reactions: { name: counter, value: counterView.value, version: counterView.version },
      viewSource: headers.get("X-Edgeroom-Source") ?? "unknown",
      viewAgeMs: Number(headers.get("X-Edgeroom-Age-Ms") ?? 0),
    };
  }
  throw new EdgeroomRequestError(503, "inconsistent", "the room changed its history while the page was rendered; reload to try again");
}
