// The visitor's id: a random id in an HttpOnly cookie, used as the `sub` of their edgeroom tokens.
// A real app would take the user id from its own session here instead.
import "server-only";

export const VISITOR_COOKIE = "edgeroom_visitor";
const VISITOR_ID = /^[a-f0-9]{16}$/;

/** The visitor id in `value` (a cookie), if it is one. */
export function parseVisitor(value: string | undefined): string | null {
  return value && VISITOR_ID.test(value) ? value : null;
}

/** A new random visitor id. */
export function newVisitor(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
