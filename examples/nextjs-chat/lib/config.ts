// This Worker's edgeroom settings, read from its bindings and checked, with errors that say what to fix.
import "server-only";
import { getCloudflareContext } from "@opennextjs/cloudflare";
import type { SigningKey } from "./token";

export interface EdgeroomConfig {
  /** The edgeroom Worker, through the service binding. */
  service: CloudflareEnv["EDGEROOM"];
  tenant: string;
  publicUrl: string;
  key: SigningKey;
}

export class ConfigError extends Error {
  override name = "ConfigError";
}

export async function edgeroomConfig(): Promise<EdgeroomConfig> {
  const { env } = await getCloudflareContext({ async: true });
  if (!env.EDGEROOM || typeof env.EDGEROOM.fetch !== "function") {
    throw new ConfigError("the EDGEROOM service binding is missing: add it to wrangler.jsonc (`services`)");
  }
  if (!env.EDGEROOM_TENANT) throw new ConfigError("EDGEROOM_TENANT is not set (wrangler.jsonc `vars`)");
  if (!env.EDGEROOM_PUBLIC_URL) throw new ConfigError("EDGEROOM_PUBLIC_URL is not set (wrangler.jsonc `vars`)");
  const secret = env.EDGEROOM_TENANT_SECRET;
  if (!secret) {
    throw new ConfigError(
      "EDGEROOM_TENANT_SECRET is not set: put it in .dev.vars locally, or `npx wrangler secret put EDGEROOM_TENANT_SECRET` when deployed",
    );
  }
  const key: SigningKey = env.EDGEROOM_KEY_ID ? { secret, kid: env.EDGEROOM_KEY_ID } : { secret };
  return { service: env.EDGEROOM, tenant: env.EDGEROOM_TENANT, publicUrl: env.EDGEROOM_PUBLIC_URL, key };
}
