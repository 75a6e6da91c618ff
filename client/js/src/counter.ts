import { Connection, type ConnectionEvents, type ConnectionOptions } from "./connection.js";
import { EdgeroomError } from "./errors.js";
import type { ServerMessage } from "./protocol.js";

export interface CounterOptions extends ConnectionOptions {
  /** The counter's name. */
  name: string;
}

/** A counter's value at a version. */
export interface CounterValue {
  value: number;
  version: number;
}

/** An acknowledged counter write: the counter's version right after it (the `change` event carries values). */
export interface CounterAck {
  opId: string;
  version: number;
}

export interface CounterEventMap extends ConnectionEvents {
  /** The value changed (every version the server reports, in order; older frames are ignored). */
  change: CounterValue;
}

/**
 * A live counter: the value as the server reports it, and writes that resolve on their `ack`
 * with the version they produced. Values are JSON numbers: exact up to 2^53.
 */
export class Counter extends Connection<CounterEventMap> {
  readonly name: string;
  #value: number | undefined;
  #version = -1;

  constructor(options: CounterOptions) {
    const path = `/v1/t/${encodeURIComponent(options.tenant)}/counters/${encodeURIComponent(options.name)}/ws`;
    super(path, options, () => ({}));
    this.name = options.name;
  }

  /** The latest value (`undefined` until the first frame). */
  get value(): number | undefined {
    return this.#value;
  }

  /** The version of `value` (`-1` until the first frame). */
  get version(): number {
    return this.#version;
  }

  /** Adds `delta` (may be negative); resolves with the version after the write. */
  add(delta: number): Promise<CounterAck> {
    return this.#op({ type: "counter_add", delta });
  }

  /** Sets the value (unsharded counters only). */
  set(value: number): Promise<CounterAck> {
    return this.#op({ type: "counter_set", value });
  }

  /** Resets the value to 0. */
  reset(): Promise<CounterAck> {
    return this.#op({ type: "counter_reset" });
  }

  #op(frame: Record<string, string | number>): Promise<CounterAck> {
    const opId = crypto.randomUUID();
    return this.outbox.push({ ...frame, op_id: opId }).then((version) => ({ opId, version }));
  }

  protected heartbeatFrame(nonce: number): string {
    // Counter sockets answer the JSON ping (the text `ping` auto-response is a room feature).
    return JSON.stringify({ type: "ping", nonce });
  }

  protected handle(message: ServerMessage): void {
    switch (message.type) {
      case "counter": {
        const first = !this.inSession;
        if (message.version > this.#version) {
          this.#value = message.value;
          this.#version = message.version;
          this.emit("change", { value: message.value, version: message.version });
        }
        if (first) this.sessionStarted();
        return;
      }
      case "ack":
        if (!this.outbox.ack(message.op_id, message.seq)) {
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
        this.report(new EdgeroomError("protocol_error", `unexpected ${message.type} frame on a counter`));
    }
  }

  protected sessionEnded(): void {}
}

/** Subscribes to a counter. */
export function connectCounter(options: CounterOptions): Counter {
  return new Counter(options);
}
