// Builds the admin console (admin/) into public/admin/, served by the Worker's static assets at
// /admin/: index.html, one ES module bundle (with uPlot) and one stylesheet (with uPlot's CSS).
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "../public/admin");
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await esbuild.build({
  entryPoints: { console: join(here, "src/main.js"), style: join(here, "src/style.css") },
  outdir: out,
  bundle: true,
  format: "esm",
  target: "es2022",
  platform: "browser",
  minify: true,
  sourcemap: "linked",
  legalComments: "eof",
  logLevel: "warning",
});
copyFileSync(join(here, "index.html"), join(out, "index.html"));
console.log("built public/admin (the admin console)");
