// What the room page renders: shared by the server component and the browser component.
import type { Json, Member } from "@edgeroom/client";

export type { Json, Member };

/** A chat message: one `message` event of the room. */
export interface ChatMessage {
  seq: number;
  body: Json;
  /** Connection id of the sender; `null` for messages published through the REST API. */
  sender: number | null;
}

/** The room as the server rendered it: everything up to and including event `seq` of `epoch`. */
export interface RoomSnapshot {
  tenant: string;
  room: string;
  /** The last event the page reflects; the browser resumes right after it. */
  seq: number;
  /** The history `seq` counts in. */
  epoch: string;
  state: Record<string, Json>;
  members: Member[];
  /** The last messages, oldest first. */
  messages: ChatMessage[];
  reactions: { name: string; value: number; version: number };
  /** Where the room view came from (`kv`: the read model; `object`: the room itself) and its age. */
  viewSource: string;
  viewAgeMs: number;
}

/** What the browser needs to connect. */
export interface ConnectInfo {
  /** edgeroom's public URL (the browser's WebSockets go there). */
  url: string;
  tenant: string;
}

/** The answer of `POST /api/token`. */
export interface TokenResponse {
  token: string;
  expiresAt: number;
  user: string;
}

/** The display name in a message body or presence data, if it has one. */
export function nameOf(data: Json | undefined): string | null {
  if (data && typeof data === "object" && !Array.isArray(data) && typeof data.name === "string") {
    return data.name.slice(0, 40);
  }
  return null;
}

/** The text of a message body: `{text}` or a plain string; anything else as JSON. */
export function textOf(body: Json): string {
  if (typeof body === "string") return body;
  if (body && typeof body === "object" && !Array.isArray(body) && typeof body.text === "string") return body.text;
  return JSON.stringify(body);
}
