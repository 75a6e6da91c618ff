import { Connection, type ConnectionEvents, type ConnectionOptions } from "./connection.js";
import { EdgeroomError } from "./errors.js";
import type { Json, Member, RoomEvent, ServerMessage, Welcome } from "./protocol.js";

export interface RoomOptions extends ConnectionOptions {
  /** The room's name (1 to 128 characters of `A-Z a-z 0-9 . _ -`). */
  room: string;
  /**
   * Start from this `seq` instead of the room's present: `0` replays the room's whole history
   * (as far as the server still keeps it; otherwise a `gap`). With `epoch`, resumes a session
   * saved earlier (for example across a page reload).
   */
  since?: number;
  /** The epoch that `since` counts in (from `room.epoch`). */
  epoch?: string;
  /** Presence data to announce on every connection (see `setPresence`). */
  presence?: Json;
}

/** A change of the shared state. */
export interface StateChange {
  /** The whole state after the change. */
  state: ReadonlyMap<string, Json>;
  /** The key that changed, or `null` when the whole state was replaced (first welcome, gap). */
  key: string | null;
  /** The key's new value (`undefined` when it was deleted or the whole state was replaced). */
  value: Json | undefined;
  /** The `seq` of the change. */
  seq: number;
}

/** Presence after a change. */
export interface PresenceChange {
  /** Every member, in connection order, this connection included. */
  members: readonly Member[];
  joined: Member[];
  left: number[];
  updated: Member[];
}

/** Events `resumeFrom + 1 ..= seq` were not delivered; the state was rebuilt from the server's. */
export interface GapInfo {
  resumeFrom: number;
  seq: number;
  epoch: string | null;
  state: ReadonlyMap<string, Json>;
}

export interface RoomEventMap extends ConnectionEvents {
  /** Every room event (messages and state changes) exactly once, in `seq` order, across reconnects. */
  event: RoomEvent;
  /** Message events only (`kind: "message"`), exactly once and in order. */
  message: RoomEvent;
  /** The shared state changed. */
  state: StateChange;
  /** Someone joined, left or changed their presence data (also sent after every welcome). */
  presence: PresenceChange;
  /** Events were missed and cannot be replayed (history trimmed, or the room was restored). */
  gap: GapInfo;
  /** Each session's `welcome`, as sent. */
  welcome: Welcome;
}

/** Options of one operation. */
export interface PublishOptions {
  topic?: string;
}

/** What an acknowledged operation became. */
export interface Ack {
  opId: string;
  /** The operation's event sequence number. */
  seq: number;
}

/**
 * A room: ordered events exactly once across reconnects, a live shared state, presence, and
 * operations that resolve on their `ack`.
 */
export class Room extends Connection<RoomEventMap> {
  readonly name: string;
  #seq: number | undefined;
  #epoch: string | null;
  #state = new Map<string, Json>();
  #members = new Map<number, Member>();
  #connectionId: number | null = null;
  #presence: Json | undefined;
  /** This session's welcome while a resume is pending (replaced state comes from it on a gap). */
  #welcome: Welcome | null = null;
  #gapThisSession = false;
  /** Sequence holes in a row without progress (for the resume backoff). */
  #holes = 0;

  constructor(options: RoomOptions) {
    const path = `/v1/t/${encodeURIComponent(options.tenant)}/rooms/${encodeURIComponent(options.room)}/ws`;
    super(path, options, () => ({ resume_from: this.#seq, epoch: this.#seq === undefined ? null : this.#epoch }));
    this.name = options.room;
    this.#seq = options.since;
    this.#epoch = options.epoch ?? null;
    this.#presence = options.presence;
  }

  /** The `seq` of the last event processed (`undefined` before the first welcome). */
  get seq(): number | undefined {
    return this.#seq;
  }

  /** The room's epoch (keep it with `seq` to resume later). */
  get epoch(): string | null {
    return this.#epoch;
  }

  /** The shared state: a live map, updated before every `state` event. */
  get state(): ReadonlyMap<string, Json> {
    return this.#state;
  }

  /** The members present, this connection included. */
  get members(): readonly Member[] {
    return [...this.#members.values()].sort((a, b) => a.connection_id - b.connection_id);
  }

  /** This connection's id in the room (changes on every reconnect; `null` while disconnected). */
  get connectionId(): number | null {
    return this.#connectionId;
  }

  /** Publishes a message; resolves when it is durable, with its `seq`. */
  publish(body: Json, options: PublishOptions = {}): Promise<Ack> {
    return this.#op({ type: "publish", body, topic: options.topic ?? null });
  }

  /** Sets one key of the shared state; resolves when it is durable. */
  setState(key: string, value: Json): Promise<Ack> {
    return this.#op({ type: "state_set", key, value });
  }

  /** Deletes one key of the shared state; resolves when it is durable. */
  deleteState(key: string): Promise<Ack> {
    return this.#op({ type: "state_delete", key });
  }

  /** Replaces this connection's presence data; kept and announced again after every reconnect. */
  setPresence(data: Json): void {
    this.#presence = data;
    this.sendNow({ type: "presence_set", data });
  }

  protected heartbeatFrame(): string {
    return "ping";
  }

  #op(frame: Record<string, Json>): Promise<Ack> {
    const opId = crypto.randomUUID();
    return this.outbox.push({ ...frame, op_id: opId }).then((seq) => ({ opId, seq }));
  }

  protected handle(message: ServerMessage): void {
    switch (message.type) {
      case "welcome":
        return this.#onWelcome(message);
      case "event":
        return this.#onEvent(message);
      case "events":
        for (const event of message.events) {
          if (!this.#welcome) return; // this session was dropped (sequence hole)
          this.#onEvent(event);
        }
        return;
      case "gap":
        return this.#onGap(message.resume_from, message.seq);
      case "presence":
        return this.#onPresence(message.joined, message.left, message.updated);
      case "ack":
        if (!this.outbox.ack(message.op_id, message.seq)) {
          // A late ack for an operation that already expired or came from another client copy.
          this.report(new EdgeroomError("unknown_ack", `ack for unknown operation ${message.op_id}`, { opId: message.op_id }));
        }
        return;
      case "error": {
        const error = new EdgeroomError(message.code, message.message, { opId: message.op_id });
        if (message.op_id === null || !this.outbox.fail(message.op_id, error)) this.report(error);
        return;
      }
      case "pong":
        return;
      default:
        this.report(new EdgeroomError("protocol_error", `unexpected ${message.type} frame in a room`));
    }
  }

  protected sessionEnded(): void {
    this.#welcome = null;
    this.#connectionId = null;
  }

  #onWelcome(welcome: Welcome): void {
    this.#connectionId = welcome.connection_id;
    this.#members = new Map(welcome.members.map((m) => [m.connection_id, m]));
    this.#welcome = welcome;
    this.#gapThisSession = false;
    const fresh = this.#seq === undefined;
    if (fresh) {
      this.#seq = welcome.seq;
      this.#epoch = welcome.epoch;
      this.#replaceState(welcome);
    } else if (this.#epoch === null) {
      this.#epoch = welcome.epoch;
    }
    this.emit("welcome", welcome);
    this.sessionStarted();
    if (this.#presence !== undefined) this.sendNow({ type: "presence_set", data: this.#presence });
    this.emit("presence", { members: this.members, joined: [], left: [], updated: [] });
    if (fresh) {
      this.emit("state", { state: this.#state, key: null, value: undefined, seq: welcome.seq });
    } else if (welcome.epoch !== this.#epoch || welcome.seq < (this.#seq ?? 0)) {
      // Our seq counts in another history: the server sends a gap too; act on it now.
      this.#onGap(this.#seq ?? 0, welcome.seq);
    }
  }

  #onGap(resumeFrom: number, seq: number): void {
    const welcome = this.#welcome;
    if (!welcome) {
      this.report(new EdgeroomError("protocol_error", "gap before welcome"));
      return;
    }
    if (this.#gapThisSession) return;
    this.#gapThisSession = true;
    this.#seq = Math.max(welcome.seq, seq);
    this.#epoch = welcome.epoch;
    this.#replaceState(welcome);
    this.emit("gap", { resumeFrom, seq, epoch: this.#epoch, state: this.#state });
    this.emit("state", { state: this.#state, key: null, value: undefined, seq: this.#seq });
  }

  #onEvent(event: RoomEvent): void {
    if (this.#seq === undefined || !this.#welcome) {
      if (this.inSession) return; // the rest of a session dropped for a hole: it is resumed
      this.report(new EdgeroomError("protocol_error", `event ${event.seq} before welcome`));
      return;
    }
    if (event.seq <= this.#seq) return; // already processed (a replay overlapping what we have)
    if (event.seq !== this.#seq + 1) {
      // Never deliver out of order: drop this session and resume from the last event we have.
      // A hole that keeps coming back is retried with a growing delay, not in a tight loop.
      this.#holes += 1;
      const delay = Math.min(30_000, 250 * 2 ** (this.#holes - 1));
      this.report(new EdgeroomError("sequence_hole", `expected event ${this.#seq + 1}, got ${event.seq}; resuming in ${delay} ms`));
      this.#welcome = null;
      this.reconnectAfter(delay);
      return;
    }
    this.#holes = 0;
    this.#seq = event.seq;
    if (event.kind === "state_set" && event.key !== null) {
      this.#state.set(event.key, event.body);
      this.emit("state", { state: this.#state, key: event.key, value: event.body, seq: event.seq });
    } else if (event.kind === "state_delete" && event.key !== null) {
      this.#state.delete(event.key);
      this.emit("state", { state: this.#state, key: event.key, value: undefined, seq: event.seq });
    }
    this.emit("event", event);
    if (event.kind === "message") this.emit("message", event);
  }

  #onPresence(joined: Member[], left: number[], updated: Member[]): void {
    for (const id of left) this.#members.delete(id);
    for (const m of [...joined, ...updated]) this.#members.set(m.connection_id, m);
    this.emit("presence", { members: this.members, joined, left, updated });
  }

  #replaceState(welcome: Welcome): void {
    this.#state.clear();
    for (const entry of welcome.state) this.#state.set(entry.key, entry.value);
  }
}

/** Joins a room. */
export function connectRoom(options: RoomOptions): Room {
  return new Room(options);
}
