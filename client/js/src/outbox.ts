import { EdgeroomError } from "./errors.js";

/** Bounds of the outgoing buffer. */
export interface OutboxOptions {
  /** How long an operation may wait for a connection before it is rejected with `expired` (ms). */
  offlineTtlMs: number;
  /** At most this many unacknowledged operations. */
  maxBufferedOps: number;
  /** At most this many bytes of unacknowledged operations (their JSON text). */
  maxBufferedBytes: number;
}

interface Pending {
  opId: string;
  text: string;
  bytes: number;
  sent: boolean;
  timer: ReturnType<typeof setTimeout> | null;
  resolve: (seq: number) => void;
  reject: (error: EdgeroomError) => void;
}

/**
 * Operations waiting for their `ack`, in the order they were made. While the connection is up
 * they are sent at once; while it is down they wait at most `offlineTtlMs`, and on every new
 * session they are sent again with their original op ids (the server applies each op id once).
 */
export class Outbox {
  #pending = new Map<string, Pending>();
  #bytes = 0;
  #online = false;

  constructor(
    private readonly options: OutboxOptions,
    private readonly send: (text: string) => boolean,
  ) {}

  get size(): number {
    return this.#pending.size;
  }

  /** Queues an operation (a JSON object with an `op_id`); resolves with the ack's `seq`. */
  push(frame: { op_id: string } & Record<string, unknown>): Promise<number> {
    const text = JSON.stringify(frame);
    const bytes = byteLength(text);
    return new Promise<number>((resolve, reject) => {
      if (this.#pending.size >= this.options.maxBufferedOps || this.#bytes + bytes > this.options.maxBufferedBytes) {
        reject(new EdgeroomError("buffer_full", `outgoing buffer is full (${this.#pending.size} operations, ${this.#bytes} bytes)`, { opId: frame.op_id }));
        return;
      }
      const op: Pending = { opId: frame.op_id, text, bytes, sent: false, timer: null, resolve, reject };
      this.#pending.set(op.opId, op);
      this.#bytes += bytes;
      if (this.#online) this.#transmit(op);
      else this.#arm(op);
    });
  }

  /** A session started: send every pending operation again, in order. */
  online(): void {
    this.#online = true;
    for (const op of this.#pending.values()) this.#transmit(op);
  }

  /** The connection dropped: every unacknowledged operation starts its offline TTL. */
  offline(): void {
    if (!this.#online) return;
    this.#online = false;
    for (const op of this.#pending.values()) this.#arm(op);
  }

  /** Resolves the operation named by an `ack`. Returns whether it was ours. */
  ack(opId: string, seq: number): boolean {
    const op = this.#take(opId);
    op?.resolve(seq);
    return op !== undefined;
  }

  /** Rejects the operation named by an `error` frame. Returns whether it was ours. */
  fail(opId: string, error: EdgeroomError): boolean {
    const op = this.#take(opId);
    op?.reject(error);
    return op !== undefined;
  }

  /** Rejects everything (the client is closing). */
  rejectAll(code: string, message: string): void {
    for (const op of [...this.#pending.values()]) {
      this.#take(op.opId);
      op.reject(new EdgeroomError(code, message, { opId: op.opId, maybeApplied: op.sent }));
    }
  }

  #transmit(op: Pending): void {
    if (op.timer !== null) clearTimeout(op.timer);
    op.timer = null;
    if (this.send(op.text)) op.sent = true;
    else this.#arm(op);
  }

  #arm(op: Pending): void {
    if (op.timer !== null) return;
    op.timer = setTimeout(() => {
      if (!this.#take(op.opId)) return;
      const waited = `not acknowledged within ${this.options.offlineTtlMs} ms while offline`;
      op.reject(new EdgeroomError("expired", `operation ${op.opId} ${waited}`, { opId: op.opId, maybeApplied: op.sent }));
    }, this.options.offlineTtlMs);
  }

  #take(opId: string): Pending | undefined {
    const op = this.#pending.get(opId);
    if (!op) return undefined;
    this.#pending.delete(opId);
    this.#bytes -= op.bytes;
    if (op.timer !== null) clearTimeout(op.timer);
    return op;
  }
}

function byteLength(text: string): number {
  return new TextEncoder().encode(text).length;
}
