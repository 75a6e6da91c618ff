/**
 * Why an operation or frame failed. `code` is one of the server's error codes
 * (`forbidden`, `too_large`, `rate_limited`, …, see docs/protocol.md) or one of the client's own:
 * - `expired`: the operation waited offline longer than `offlineTtlMs` and was given up;
 *   `maybeApplied` says whether it had been sent before the connection dropped.
 * - `buffer_full`: the outgoing buffer was at its bound (`maxBufferedOps` / `maxBufferedBytes`).
 * - `closed`: the client was closed before the operation was acknowledged.
 * - `protocol_error`: the server sent a frame this client could not understand (reported, then ignored).
 * - `sequence_hole`: an event arrived out of order; the client reconnects to resume exactly.
 */
export class EdgeroomError extends Error {
  readonly code: string;
  readonly opId: string | null;
  readonly maybeApplied: boolean;

  constructor(code: string, message: string, options: { opId?: string | null; maybeApplied?: boolean } = {}) {
    super(message);
    this.name = "EdgeroomError";
    this.code = code;
    this.opId = options.opId ?? null;
    this.maybeApplied = options.maybeApplied ?? false;
  }
}
