// The bindings of this Worker (wrangler.jsonc), as `getCloudflareContext().env` sees them.

/** A service binding: `fetch` reaches the bound Worker directly, without a public round trip. */
interface ServiceBinding {
  fetch(input: Request | string | URL, init?: RequestInit): Promise<Response>;
}

declare global {
  interface CloudflareEnv {
    /** The edgeroom Worker (`services` in wrangler.jsonc). */
    EDGEROOM: ServiceBinding;
    /** The edgeroom tenant of this app's rooms. */
    EDGEROOM_TENANT: string;
    /** Where browsers reach edgeroom (http(s) or ws(s) URL of the edgeroom Worker). */
    EDGEROOM_PUBLIC_URL: string;
    /** The tenant's HS256 signing secret (a Worker secret; `.dev.vars` locally). */
    EDGEROOM_TENANT_SECRET?: string;
    /** The key id (`kid`) of that secret, when edgeroom's TENANT_SECRETS lists keys for rotation. */
    EDGEROOM_KEY_ID?: string;
  }
}

export {};
