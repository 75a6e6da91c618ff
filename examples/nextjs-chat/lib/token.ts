// Signs edgeroom tokens: HS256 JWTs with the tenant's secret (see "Tokens and rights" in edgeroom's
// README), with Web Crypto. Server-only: the secret never leaves the Worker.
import "server-only";

export type Right = "read" | "write" | "presence" | "admin";

/** Rights in the rooms (and counters) whose names match `room`: exact, `prefix*` or `*`. */
export interface Grant {
  room: string;
  rights: Right[];
}

export interface TokenRequest {
  /** The user id (members show it as `user`). */
  sub: string;
  tenant: string;
  rooms: Grant[];
  /** Lifetime in seconds. */
  ttlSeconds: number;
}

export interface SigningKey {
  secret: string;
  /** The key id, when edgeroom's TENANT_SECRETS lists this tenant's keys with ids. */
  kid?: string;
}

export interface SignedToken {
  token: string;
  /** Expiry, in milliseconds since the Unix epoch. */
  expiresAt: number;
}

const encoder = new TextEncoder();

function base64url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

const keys = new Map<string, Promise<CryptoKey>>();

function hmacKey(secret: string): Promise<CryptoKey> {
  let key = keys.get(secret);
  if (!key) {
    key = crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    keys.set(secret, key);
  }
  return key;
}

/** Signs a token for `request` with `key`, valid from now (less a little clock skew) for `ttlSeconds`. */
export async function signToken(request: TokenRequest, key: SigningKey, nowMs = Date.now()): Promise<SignedToken> {
  if (encoder.encode(key.secret).length < 16) {
    throw new Error("the tenant secret is shorter than 16 bytes; edgeroom refuses such secrets");
  }
  const now = Math.floor(nowMs / 1000);
  const exp = now + request.ttlSeconds;
  const header = key.kid ? { alg: "HS256", typ: "JWT", kid: key.kid } : { alg: "HS256", typ: "JWT" };
  const claims = { sub: request.sub, tenant: request.tenant, rooms: request.rooms, exp, nbf: now - 30 };
  const input = `${base64url(encoder.encode(JSON.stringify(header)))}.${base64url(encoder.encode(JSON.stringify(claims)))}`;
  const signature = await crypto.subtle.sign("HMAC", await hmacKey(key.secret), encoder.encode(input));
  return { token: `${input}.${base64url(new Uint8Array(signature))}`, expiresAt: exp * 1000 };
}
