import ReconnectingWebSocket from "partysocket/ws";
import { Emitter } from "./emitter.js";
import { EdgeroomError } from "./errors.js";
import { Outbox } from "./outbox.js";
import { decodeServerFrame, type ServerMessage } from "./protocol.js";

/** The state of a client's connection. */
export type Status =
  /** The first connection is being made. */
  | "connecting"
  /** The session is up (the room's `welcome`, or the counter's first value, arrived). */
  | "connected"
  /** The connection dropped; reconnecting with backoff and resuming where it left off. */
  | "reconnecting"
  /** The browser says it is offline; the client reconnects when it is back online. */
  | "offline"
  /** `close()` was called. */
  | "closed";

/** A token, or a function that fetches one from your backend (called before every connection attempt). */
export type TokenProvider = string | (() => string | null | undefined | Promise<string | null | undefined>);

/** Options shared by rooms and counters. */
export interface ConnectionOptions {
  /** The edgeroom server: `https://rooms.example.com` (http, https, ws and wss all work). */
  url: string;
  /** The tenant the room or counter belongs to. */
  tenant: string;
  /** A token (`?token=`), or a function returning one, called before every connection attempt. */
  token?: TokenProvider;
  /** A WebSocket constructor where there is no global one (Node 20: `import WebSocket from "ws"`). */
  WebSocket?: unknown;
  /** Interval of the heartbeat `ping` (ms, default 20,000). A ping left without any answer until the next one reconnects. */
  heartbeatMs?: number;
  /** How long an operation may wait offline before it is rejected with `expired` (ms, default 30,000). */
  offlineTtlMs?: number;
  /** Bound of the outgoing buffer in operations (default 1,000). */
  maxBufferedOps?: number;
  /** Bound of the outgoing buffer in bytes of JSON (default 1 MiB). */
  maxBufferedBytes?: number;
  /** Reconnect backoff: first delay (ms, default 500), growing 1.5× per failed attempt up to `maxReconnectDelayMs` (default 10,000). */
  minReconnectDelayMs?: number;
  maxReconnectDelayMs?: number;
  /** Give up a connection attempt after this long (ms, default 10,000) and retry. */
  connectTimeoutMs?: number;
}

export interface ConnectionEvents {
  status: Status;
  error: EdgeroomError;
}

/** Connection machinery shared by rooms and counters: partysocket, heartbeat, status, outbox. */
export abstract class Connection<Events extends ConnectionEvents> extends Emitter<Events> {
  protected readonly outbox: Outbox;
  readonly #socket: ReconnectingWebSocket;
  readonly #heartbeatMs: number;
  #status: Status = "connecting";
  #session = false;
  #heartbeat: ReturnType<typeof setInterval> | null = null;
  #lastPingAt = 0;
  #lastReceivedAt = 0;
  #nonce = 0;
  #browserOffline = false;
  #retry: ReturnType<typeof setTimeout> | null = null;
  readonly #onOnline = () => this.#setBrowserOffline(false);
  readonly #onOffline = () => this.#setBrowserOffline(true);

  protected constructor(
    path: string,
    options: ConnectionOptions,
    query: () => Record<string, string | number | null | undefined>,
  ) {
    super();
    this.#heartbeatMs = options.heartbeatMs ?? 20_000;
    this.outbox = new Outbox(
      {
        offlineTtlMs: options.offlineTtlMs ?? 30_000,
        maxBufferedOps: options.maxBufferedOps ?? 1000,
        maxBufferedBytes: options.maxBufferedBytes ?? 1 << 20,
      },
      (text) => this.#session && this.#socket.send(text),
    );
    const base = new URL(options.url);
    base.protocol = base.protocol === "https:" || base.protocol === "wss:" ? "wss:" : "ws:";
    base.pathname = base.pathname.replace(/\/$/, "") + path;
    const url = async (): Promise<string> => {
      const u = new URL(base);
      u.searchParams.set("format", "json");
      for (const [name, value] of Object.entries(query())) {
        if (value !== null && value !== undefined) u.searchParams.set(name, String(value));
      }
      const token = typeof options.token === "function" ? await options.token() : options.token;
      if (token) u.searchParams.set("token", token);
      return u.toString();
    };
    this.#socket = new ReconnectingWebSocket(url, undefined, {
      WebSocket: options.WebSocket,
      minReconnectionDelay: options.minReconnectDelayMs ?? 500,
      maxReconnectionDelay: options.maxReconnectDelayMs ?? 10_000,
      reconnectionDelayGrowFactor: 1.5,
      connectionTimeout: options.connectTimeoutMs ?? 10_000,
      // Our own outbox buffers operations (bounded, with a TTL); partysocket must not.
      maxEnqueuedMessages: 0,
    });
    this.#socket.addEventListener("open", () => this.#onOpen());
    this.#socket.addEventListener("message", (event) => this.#onMessage(event));
    this.#socket.addEventListener("close", () => this.#onClose());
    const g = globalThis as { addEventListener?: (type: string, f: () => void) => void; navigator?: { onLine?: boolean } };
    if (typeof g.addEventListener === "function" && typeof g.navigator?.onLine === "boolean") {
      g.addEventListener("online", this.#onOnline);
      g.addEventListener("offline", this.#onOffline);
      if (!g.navigator.onLine) this.#setBrowserOffline(true);
    }
  }

  /** The connection's status; the `status` event reports every change. */
  get status(): Status {
    return this.#status;
  }

  /** Resolves when the session is up (at once if it already is); rejects if the client is closed first. */
  whenConnected(): Promise<void> {
    if (this.#status === "connected") return Promise.resolve();
    if (this.#status === "closed") return Promise.reject(new EdgeroomError("closed", "the client is closed"));
    return new Promise((resolve, reject) => {
      const off = this.on("status", (status) => {
        if (status === "connected") resolve();
        else if (status === "closed") reject(new EdgeroomError("closed", "the client is closed"));
        else return;
        off();
      });
    });
  }

  /** Closes the connection for good; unacknowledged operations are rejected with `closed`. */
  close(): void {
    if (this.#status === "closed") return;
    const g = globalThis as { removeEventListener?: (type: string, f: () => void) => void };
    g.removeEventListener?.("online", this.#onOnline);
    g.removeEventListener?.("offline", this.#onOffline);
    this.#setStatus("closed");
    if (this.#retry !== null) clearTimeout(this.#retry);
    this.#socket.close(1000, "client closed");
    this.#endSession();
    this.outbox.rejectAll("closed", "the client was closed before the operation was acknowledged");
  }

  /** Drops the current connection and resumes on a new one (also used when the stream is out of order). */
  reconnect(): void {
    if (this.#status === "closed" || this.#browserOffline) return;
    this.#socket.reconnect(4000, "client resumes");
  }

  /** Like `reconnect()`, after `ms` (the current connection is closed at once). */
  protected reconnectAfter(ms: number): void {
    if (ms <= 0) return this.reconnect();
    if (this.#status === "closed" || this.#browserOffline) return;
    this.#socket.close(4000, "client resumes");
    this.#endSession();
    this.#setStatus("reconnecting");
    if (this.#retry !== null) clearTimeout(this.#retry);
    this.#retry = setTimeout(() => {
      this.#retry = null;
      if (this.#status !== "closed" && !this.#browserOffline) this.#socket.reconnect();
    }, ms);
  }

  /** The JSON form of the heartbeat, or the text frame `ping`. */
  protected abstract heartbeatFrame(nonce: number): string;
  /** Handles one decoded frame from the server. */
  protected abstract handle(message: ServerMessage): void;
  /** The connection dropped. */
  protected abstract sessionEnded(): void;

  /** The subclass saw the start of a session: flush the outbox, report `connected`. */
  protected sessionStarted(): void {
    this.#session = true;
    this.#setStatus("connected");
    this.outbox.online();
  }

  protected get inSession(): boolean {
    return this.#session;
  }

  /** Sends a frame now if a session is up; returns whether it was sent. */
  protected sendNow(frame: object): boolean {
    return this.#session && this.#socket.send(JSON.stringify(frame));
  }

  protected report(error: EdgeroomError): void {
    this.emit("error", error);
  }

  #setStatus(status: Status): void {
    if (this.#status === status || this.#status === "closed") return;
    this.#status = status;
    if (status === "closed") this.#session = false;
    this.emit("status", status);
  }

  #onOpen(): void {
    this.#lastReceivedAt = Date.now();
    this.#lastPingAt = 0;
    if (this.#heartbeat !== null) clearInterval(this.#heartbeat);
    this.#heartbeat = setInterval(() => this.#beat(), this.#heartbeatMs);
  }

  #beat(): void {
    if (this.#lastPingAt > 0 && this.#lastReceivedAt < this.#lastPingAt) {
      // Nothing at all came back since the last ping: the connection is dead without a close.
      this.report(new EdgeroomError("heartbeat_timeout", `no answer to the heartbeat within ${this.#heartbeatMs} ms; reconnecting`));
      this.reconnect();
      return;
    }
    this.#lastPingAt = Date.now();
    this.#socket.send(this.heartbeatFrame(++this.#nonce));
  }

  #onMessage(event: MessageEvent): void {
    this.#lastReceivedAt = Date.now();
    if (typeof event.data !== "string") {
      this.report(new EdgeroomError("protocol_error", "unexpected binary frame on a JSON connection"));
      return;
    }
    if (event.data === "pong") return;
    const decoded = decodeServerFrame(event.data);
    if (!decoded.ok) {
      this.report(new EdgeroomError("protocol_error", decoded.reason));
      return;
    }
    try {
      this.handle(decoded.message);
    } catch (error) {
      this.report(new EdgeroomError("protocol_error", `could not handle a ${decoded.message.type} frame: ${String(error)}`));
    }
  }

  #onClose(): void {
    this.#endSession();
    if (this.#status !== "closed") this.#setStatus(this.#browserOffline ? "offline" : "reconnecting");
  }

  #endSession(): void {
    if (this.#heartbeat !== null) clearInterval(this.#heartbeat);
    this.#heartbeat = null;
    const had = this.#session;
    this.#session = false;
    this.outbox.offline();
    if (had) this.sessionEnded();
  }

  #setBrowserOffline(offline: boolean): void {
    if (this.#status === "closed" || this.#browserOffline === offline) return;
    this.#browserOffline = offline;
    if (offline) {
      // Stop retrying into a dead network; resume as soon as the browser is back online.
      this.#socket.close(1000, "browser offline");
      this.#endSession();
      this.#setStatus("offline");
    } else {
      this.#setStatus("reconnecting");
      this.#socket.reconnect();
    }
  }
}
