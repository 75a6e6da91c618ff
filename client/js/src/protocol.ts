// The JSON form of edgeroom protocol v1 (docs/protocol.md), and a checked decoder for server
// frames: a frame that does not match is reported, never thrown at the caller.

/** Any JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A live connection in a room. */
export interface Member {
  connection_id: number;
  user: string | null;
  data: Json;
}

/** One key of the room's shared state, with the `seq` that last set it. */
export interface StateEntry {
  key: string;
  value: Json;
  seq: number;
}

/** A sequenced room event. */
export interface RoomEvent {
  seq: number;
  kind: "message" | "state_set" | "state_delete" | string;
  body: Json;
  /** The connection id of the sender; `null` for server-side publishes. */
  sender: number | null;
  topic: string | null;
  key: string | null;
}

export interface Welcome {
  type: "welcome";
  connection_id: number;
  seq: number;
  members: Member[];
  state: StateEntry[];
  epoch: string | null;
}

export type ServerMessage =
  | Welcome
  | ({ type: "event" } & RoomEvent)
  | { type: "events"; events: RoomEvent[] }
  | { type: "ack"; op_id: string; seq: number }
  | { type: "error"; code: string; message: string; op_id: string | null }
  | { type: "presence"; joined: Member[]; left: number[]; updated: Member[] }
  | { type: "gap"; resume_from: number; seq: number }
  | { type: "pong"; nonce: number | null }
  | { type: "counter"; name: string; value: number; version: number };


export type DecodeResult = { ok: true; message: ServerMessage } | { ok: false; reason: string };

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const isSeq = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
const isInt = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v);
const isStrOrNull = (v: unknown): boolean => v === undefined || v === null || typeof v === "string";

function checkMember(v: unknown): string | null {
  if (!isObj(v)) return "member is not an object";
  if (!isSeq(v.connection_id)) return "member.connection_id is not a number";
  if (!isStrOrNull(v.user)) return "member.user is not a string";
  return null;
}

function checkEvent(v: unknown): string | null {
  if (!isObj(v)) return "event is not an object";
  if (!isSeq(v.seq)) return "event.seq is not a sequence number";
  if (typeof v.kind !== "string") return "event.kind is not a string";
  if (v.sender !== undefined && v.sender !== null && !isSeq(v.sender)) return "event.sender is not a number";
  if (!isStrOrNull(v.topic)) return "event.topic is not a string";
  if (!isStrOrNull(v.key)) return "event.key is not a string";
  if ((v.kind === "state_set" || v.kind === "state_delete") && typeof v.key !== "string") {
    return `${v.kind} event without a key`;
  }
  return null;
}

function normalizeEvent(v: Obj): RoomEvent {
  return {
    seq: v.seq as number,
    kind: v.kind as string,
    body: (v.body ?? null) as Json,
    sender: (v.sender ?? null) as number | null,
    topic: (v.topic ?? null) as string | null,
    key: (v.key ?? null) as string | null,
  };
}

function normalizeMember(v: Obj): Member {
  return { connection_id: v.connection_id as number, user: (v.user ?? null) as string | null, data: (v.data ?? null) as Json };
}

function checkAll(list: unknown, check: (v: unknown) => string | null, what: string): string | null {
  if (!Array.isArray(list)) return `${what} is not an array`;
  for (const item of list) {
    const problem = check(item);
    if (problem) return problem;
  }
  return null;
}

/** Decodes one text frame from the server. Never throws. */
export function decodeServerFrame(text: string): DecodeResult {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return { ok: false, reason: `not JSON: ${preview(text)}` };
  }
  if (!isObj(v) || typeof v.type !== "string") return { ok: false, reason: `not an object with a string "type": ${preview(text)}` };
  const bad = (reason: string): DecodeResult => ({ ok: false, reason: `${v.type as string}: ${reason}` });
  switch (v.type) {
    case "welcome": {
      if (!isSeq(v.connection_id)) return bad("connection_id is not a number");
      if (!isSeq(v.seq)) return bad("seq is not a sequence number");
      const members = checkAll(v.members ?? [], checkMember, "members");
      if (members) return bad(members);
      const state = checkAll(v.state ?? [], (e) => (isObj(e) && typeof e.key === "string" ? null : "state entry without a key"), "state");
      if (state) return bad(state);
      if (!isStrOrNull(v.epoch)) return bad("epoch is not a string");
      return {
        ok: true,
        message: {
          type: "welcome",
          connection_id: v.connection_id,
          seq: v.seq,
          members: ((v.members ?? []) as Obj[]).map(normalizeMember),
          state: ((v.state ?? []) as Obj[]).map((e) => ({ key: e.key as string, value: (e.value ?? null) as Json, seq: isSeq(e.seq) ? e.seq : 0 })),
          epoch: (v.epoch ?? null) as string | null,
        },
      };
    }
    case "event": {
      const problem = checkEvent(v);
      return problem ? bad(problem) : { ok: true, message: { type: "event", ...normalizeEvent(v) } };
    }
    case "events": {
      const problem = checkAll(v.events, checkEvent, "events");
      return problem ? bad(problem) : { ok: true, message: { type: "events", events: (v.events as Obj[]).map(normalizeEvent) } };
    }
    case "ack":
      if (typeof v.op_id !== "string") return bad("op_id is not a string");
      if (!isSeq(v.seq)) return bad("seq is not a sequence number");
      return { ok: true, message: { type: "ack", op_id: v.op_id, seq: v.seq } };
    case "error":
      if (typeof v.code !== "string") return bad("code is not a string");
      if (!isStrOrNull(v.op_id)) return bad("op_id is not a string");
      return {
        ok: true,
        message: { type: "error", code: v.code, message: typeof v.message === "string" ? v.message : "", op_id: (v.op_id ?? null) as string | null },
      };
    case "presence": {
      const joined = checkAll(v.joined ?? [], checkMember, "joined") ?? checkAll(v.updated ?? [], checkMember, "updated");
      if (joined) return bad(joined);
      const left = checkAll(v.left ?? [], (id) => (isSeq(id) ? null : "left holds a non-number"), "left");
      if (left) return bad(left);
      return {
        ok: true,
        message: {
          type: "presence",
          joined: ((v.joined ?? []) as Obj[]).map(normalizeMember),
          left: (v.left ?? []) as number[],
          updated: ((v.updated ?? []) as Obj[]).map(normalizeMember),
        },
      };
    }
    case "gap":
      if (!isSeq(v.resume_from) || !isSeq(v.seq)) return bad("resume_from and seq must be sequence numbers");
      return { ok: true, message: { type: "gap", resume_from: v.resume_from, seq: v.seq } };
    case "pong":
      return { ok: true, message: { type: "pong", nonce: isInt(v.nonce) ? v.nonce : null } };
    case "counter":
      if (typeof v.name !== "string") return bad("name is not a string");
      // Beyond 2^53 the JSON number has already lost precision; it is still the best value we have.
      if (typeof v.value !== "number" || !Number.isInteger(v.value)) return bad("value is not an integer");
      if (!isSeq(v.version)) return bad("version is not a number");
      return { ok: true, message: { type: "counter", name: v.name, value: v.value, version: v.version } };
    default:
      return { ok: false, reason: `unknown message type ${JSON.stringify(v.type)}` };
  }
}

function preview(text: string): string {
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text);
}
