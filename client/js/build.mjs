// Builds @edgeroom/client: dist/index.js (ES module, partysocket left as a dependency) with its
// type declarations, and one self-contained browser bundle for the demo page
// (public/demo/lib/edgeroom-client.js, served by the Worker's static assets).
import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "../..");
const require = createRequire(import.meta.url);
const common = { entryPoints: [join(here, "src/index.ts")], bundle: true, format: "esm", target: "es2022", logLevel: "warning" };

rmSync(join(here, "dist"), { recursive: true, force: true });
await esbuild.build({ ...common, outfile: join(here, "dist/index.js"), external: ["partysocket", "partysocket/*"], sourcemap: true, platform: "neutral" });
await esbuild.build({ ...common, outfile: join(root, "public/demo/lib/edgeroom-client.js"), platform: "browser", minify: true, sourcemap: "linked", legalComments: "eof" });
execFileSync(process.execPath, [require.resolve("typescript/bin/tsc"), "-p", here, "--emitDeclarationOnly"], { stdio: "inherit" });
console.log("built client/js/dist and public/demo/lib/edgeroom-client.js");
