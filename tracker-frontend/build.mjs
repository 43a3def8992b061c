// Builds dist/: index.html, app.js + app.css (esbuild bundle of src/), media/ clips, a default
// config.js (replaced at run time by lvp/local/tracker_site.py) and build-info.json.
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = dirname(fileURLToPath(import.meta.url));
const dist = join(root, "dist");
rmSync(dist, { recursive: true, force: true });
mkdirSync(join(dist, "media"), { recursive: true });

await esbuild.build({
  entryPoints: { app: join(root, "src", "main.ts") },
  outdir: dist,
  bundle: true,
  format: "iife",
  target: ["es2020"],
  minify: true,
  sourcemap: true,
  legalComments: "eof",
  logLevel: "warning",
});

const hash = createHash("sha256");
for (const f of ["app.js", "app.css"]) hash.update(readFileSync(join(dist, f)));
const build = hash.digest("hex").slice(0, 12);
const html = readFileSync(join(root, "src", "index.html"), "utf8").replaceAll("%BUILD%", build);
writeFileSync(join(dist, "index.html"), html);

const clips = readdirSync(join(root, "media")).filter((f) => f.endsWith(".webm"));
for (const f of clips) copyFileSync(join(root, "media", f), join(dist, "media", f));

// Used when dist/ is served by any static server: collector on port 9090 of the page's host.
writeFileSync(
  join(dist, "config.js"),
  'window.LVP_CONFIG = {"collectorUrl": ":9090", "appId": "lvp-demo", "pingIntervalS": 10, "liveUrl": ""};\n',
);

const version = (pkg) =>
  JSON.parse(readFileSync(join(root, "node_modules", ...pkg.split("/"), "package.json"), "utf8")).version;
const info = {
  build,
  packages: Object.fromEntries(
    ["@snowplow/browser-tracker", "@snowplow/browser-plugin-media", "esbuild"].map((p) => [p, version(p)]),
  ),
  media: clips,
};
writeFileSync(join(dist, "build-info.json"), JSON.stringify(info, null, 2) + "\n");
console.log(`tracker-frontend: built dist/ (${build}) with`, info.packages);
