// OpenNext's Cloudflare adapter. Every page of this app is dynamic (rooms are live), so it needs
// no incremental cache (no R2 bucket, no KV namespace for the Next.js cache).
import { defineCloudflareConfig } from "@opennextjs/cloudflare";

export default defineCloudflareConfig({});
