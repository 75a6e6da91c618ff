// `POST /api/token {"room": "<name>"}`: an edgeroom token for this visitor, for that room only,
// signed here with the tenant secret from this Worker's secrets. The browser calls it before every
// connection attempt (see lib/token-source.ts), so the secret never reaches it.
import { cookies } from "next/headers";
import { ConfigError, edgeroomConfig } from "@/lib/config";
import { isRoomName, reactionsCounter } from "@/lib/names";
import { signToken } from "@/lib/token";
import type { TokenResponse } from "@/lib/types";
import { VISITOR_COOKIE, newVisitor, parseVisitor } from "@/lib/visitor";

export const dynamic = "force-dynamic";

/** Token lifetime: the client asks again before every reconnect, so it can stay short. */
const TTL_SECONDS = 10 * 60;

function error(status: number, code: string, message: string): Response {
  return Response.json({ error: { code, message } }, { status, headers: { "Cache-Control": "no-store" } });
}

function sameHost(origin: string, host: string | null): boolean {
  try {
    return host !== null && new URL(origin).host === host;
  } catch {
    return false;
  }
}

export async function POST(request: Request): Promise<Response> {
  // Only this app's own pages ask for tokens (browsers send Origin on every POST). Compared with
  // the Host header: behind `wrangler dev` the request's URL names localhost instead.
  const origin = request.headers.get("Origin");
  if (origin !== null && !sameHost(origin, request.headers.get("Host"))) {
    return error(403, "forbidden", "tokens are only minted for this site's own pages");
  }
  let room: unknown;
  try {
    ({ room } = (await request.json()) as { room?: unknown });
  } catch {
    return error(400, "bad_request", 'the body must be JSON: {"room": "<name>"}');
  }
  if (typeof room !== "string" || !isRoomName(room)) {
    return error(400, "bad_name", "room must be 1 to 64 characters of A-Z a-z 0-9 . _ -");
  }
  // Here a real app checks its own session: may this user enter this room, and with which rights?
  const jar = await cookies();
  let visitor = parseVisitor(jar.get(VISITOR_COOKIE)?.value);
  if (!visitor) {
    visitor = newVisitor();
    jar.set(VISITOR_COOKIE, visitor, {
      httpOnly: true,
      sameSite: "lax",
      secure: new URL(request.url).protocol === "https:",
      path: "/",
      maxAge: 60 * 60 * 24 * 365,
    });
  }
  try {
    const config = await edgeroomConfig();
    const { token, expiresAt } = await signToken(
      {
        sub: visitor,
        tenant: config.tenant,
        // This room, and its reactions counter: nothing else.
        rooms: [
          { room, rights: ["read", "write", "presence"] },
          { room: reactionsCounter(room), rights: ["read", "write"] },
        ],
        ttlSeconds: TTL_SECONDS,
      },
      config.key,
    );
    const body: TokenResponse = { token, expiresAt, user: visitor };
    return Response.json(body, { headers: { "Cache-Control": "no-store" } });
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    console.error(`minting an edgeroom token failed: ${message}`);
    return error(500, e instanceof ConfigError ? "misconfigured" : "internal", message);
  }
}
