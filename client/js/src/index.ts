/**
 * `@edgeroom/client`: rooms, presence, shared state and counters over edgeroom's JSON protocol v1,
 * for browsers and Node 20+ (pass `WebSocket` from the `ws` package there).
 */
export { Room, connectRoom } from "./room.js";
export type { RoomOptions, RoomEventMap, StateChange, PresenceChange, GapInfo, PublishOptions, Ack } from "./room.js";
export { Counter, connectCounter } from "./counter.js";
export type { CounterOptions, CounterEventMap, CounterValue, CounterAck } from "./counter.js";
export type { ConnectionOptions, Status, TokenProvider } from "./connection.js";
export { EdgeroomError } from "./errors.js";
export { decodeServerFrame } from "./protocol.js";
export type { Json, Member, RoomEvent, StateEntry, Welcome, ServerMessage } from "./protocol.js";
