#!/usr/bin/env node
// One command for local development: builds what is missing, then runs both Workers on this
// machine, each in its own `wrangler dev`, joined by wrangler's dev registry (so the Next.js app's
// EDGEROOM service binding reaches the local edgeroom):
//   edgeroom               http://127.0.0.1:${EDGEROOM_PORT:-8787}  (browsers' WebSockets go here)
//   the Next.js app        http://127.0.0.1:${PORT:-8788}/rooms/lobby
// Ctrl-C stops both. Secrets: edgeroom's .dev.vars (repository root) gets a signing secret for
// tenant "demo" if it has none, and this app's .dev.vars gets the same secret.
//
// Why not `wrangler dev -c wrangler.jsonc -c ../../wrangler.toml`: with several configs wrangler
// serves only the first Worker over HTTP, and the browser must reach edgeroom's WebSockets.
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = join(dirname(fileURLToPath(import.meta.url)), "..");
const root = join(here, "../..");
const tenant = "demo";
const edgeroomPort = Number(process.env.EDGEROOM_PORT ?? 8787);
const appPort = Number(process.env.PORT ?? 8788);
const env = {
  ...process.env,
  WRANGLER_SEND_METRICS: "false",
  CLOUDFLARE_CF_FETCH_ENABLED: "false",
  NEXT_TELEMETRY_DISABLED: "1",
  // A registry of our own: the binding must find this edgeroom, not another `wrangler dev` named
  // "edgeroom" elsewhere on the machine.
  WRANGLER_REGISTRY_PATH: join(here, ".wrangler/registry"),
};

function run(command, args, cwd) {
  const result = spawnSync(command, args, { cwd, env, stdio: "inherit" });
  if (result.status !== 0) {
    console.error(`error: ${command} ${args.join(" ")} failed (exit ${result.status})`);
    process.exit(1);
  }
}

/** Parses a .dev.vars file (KEY=value lines). */
function readVars(file) {
  const vars = new Map();
  if (!existsSync(file)) return vars;
  for (const line of readFileSync(file, "utf8").split("\n")) {
    const match = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (match) vars.set(match[1], match[2].replace(/^"(.*)"$/, "$1"));
  }
  return vars;
}

function writeVars(file, vars) {
  writeFileSync(file, [...vars].map(([k, v]) => `${k}=${v}`).join("\n") + "\n", { mode: 0o600 });
}

const random = () => randomBytes(24).toString("base64url");

/** edgeroom's local secrets, with a signing key for `tenant`; returns that key. */
function edgeroomSecret() {
  const file = join(root, ".dev.vars");
  const vars = readVars(file);
  if (!vars.has("ADMIN_KEY")) vars.set("ADMIN_KEY", random());
  let secrets = {};
  if (vars.has("TENANT_SECRETS")) {
    try {
      secrets = JSON.parse(vars.get("TENANT_SECRETS"));
    } catch (error) {
      console.error(`error: TENANT_SECRETS in ${file} is not JSON (${error.message}); fix or delete that line`);
      process.exit(1);
    }
  }
  if (!(tenant in secrets)) {
    secrets[tenant] = random();
    vars.set("TENANT_SECRETS", JSON.stringify(secrets));
    writeVars(file, vars);
    console.log(`==> added a signing secret for tenant ${tenant} to ${file}`);
  }
  const keys = secrets[tenant];
  // One secret, or a list of {kid, secret} whose first key signs.
  return typeof keys === "string" ? { secret: keys } : { secret: keys[0].secret, kid: keys[0].kid };
}

console.log("==> setting up edgeroom (scripts/setup.sh)");
run(join(root, "scripts/setup.sh"), [], root);
run(join(here, "scripts/build.sh"), [], here);

const key = edgeroomSecret();
const appVars = new Map([["EDGEROOM_TENANT_SECRET", key.secret]]);
if (key.kid) appVars.set("EDGEROOM_KEY_ID", key.kid);
writeVars(join(here, ".dev.vars"), appVars);
mkdirSync(env.WRANGLER_REGISTRY_PATH, { recursive: true });

const children = [];
function start(name, command, args, cwd, extraEnv = {}) {
  const child = spawn(command, args, { cwd, env: { ...env, ...extraEnv }, stdio: ["ignore", "pipe", "pipe"], detached: true });
  const prefix = `[${name}] `;
  for (const stream of [child.stdout, child.stderr]) {
    let rest = "";
    stream.on("data", (chunk) => {
      const lines = (rest + chunk).split("\n");
      rest = lines.pop();
      for (const line of lines) process.stdout.write(prefix + line + "\n");
    });
  }
  child.on("exit", (code, signal) => {
    console.log(`${prefix}exited (${signal ?? code})`);
    stop(1);
  });
  children.push(child);
  return child;
}

let stopping = false;
function stop(code) {
  if (stopping) return;
  stopping = true;
  for (const child of children) {
    try {
      process.kill(-child.pid, "SIGTERM");
    } catch {
      // already gone
    }
  }
  setTimeout(() => process.exit(code), 1500);
}
process.on("SIGINT", () => stop(0));
process.on("SIGTERM", () => stop(0));

// edgeroom: scripts/dev.sh applies the migrations and serves with state in .state/.
start("edgeroom", join(root, "scripts/dev.sh"), [], root, { PORT: String(edgeroomPort) });
start("next", join(here, "node_modules/.bin/wrangler"), [
  "dev", "--local", "--ip", "127.0.0.1", "--port", String(appPort), "--inspector-port", "0",
  "--persist-to", join(here, ".state"),
  "--var", `EDGEROOM_PUBLIC_URL:http://127.0.0.1:${edgeroomPort}`,
], here);

async function ready(url) {
  for (;;) {
    if (stopping) return false;
    try {
      const response = await fetch(url, { redirect: "manual" });
      if (response.status < 500) return true;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}
if ((await ready(`http://127.0.0.1:${edgeroomPort}/healthz`)) && (await ready(`http://127.0.0.1:${appPort}/`))) {
  console.log(`\n==> both Workers are up. Open http://127.0.0.1:${appPort}/rooms/lobby in two tabs (Ctrl-C stops both).\n`);
}
