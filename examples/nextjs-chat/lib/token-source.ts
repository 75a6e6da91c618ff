// Browser side: fetches this visitor's edgeroom token from the app (`POST /api/token`) and reuses it
// until shortly before it expires. @edgeroom/client calls `get` before every connection attempt.
import type { TokenResponse } from "./types";

export class TokenSource {
  #room: string;
  #current: TokenResponse | null = null;
  #pending: Promise<TokenResponse> | null = null;

  constructor(room: string) {
    this.#room = room;
  }

  /** A token valid for at least another minute. */
  async get(): Promise<string> {
    if (this.#current && this.#current.expiresAt - Date.now() > 60_000) return this.#current.token;
    this.#pending ??= this.#fetch().finally(() => {
      this.#pending = null;
    });
    this.#current = await this.#pending;
    return this.#current.token;
  }

  async #fetch(): Promise<TokenResponse> {
    const response = await fetch("/api/token", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ room: this.#room }),
      cache: "no-store",
    });
    if (!response.ok) {
      const text = await response.text();
      throw new Error(`POST /api/token answered ${response.status}: ${text.slice(0, 200)}`);
    }
    return (await response.json()) as TokenResponse;
  }
}
