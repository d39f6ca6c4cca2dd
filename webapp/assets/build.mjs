// Bundles the browser code with esbuild: webapp/static/js/diagram.js -> webapp/static/dist/diagram.{js,css};
// the modeller's webapp/assets/modeller*.js -> webapp/static/dist/modeller*.{js,css}; the monitor's
// webapp/assets/monitor.js -> webapp/static/dist/monitor.js.
// `npm ci && npm run build`. The output is not committed (.gitignore); nothing is loaded from a CDN.
import { build } from "esbuild";
import { mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const out = join(root, "webapp", "static", "dist");

await mkdir(out, { recursive: true });
await build({
  entryPoints: [join(root, "webapp", "static", "js", "diagram.js")],
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020"],
  outfile: join(out, "diagram.js"),
  legalComments: "linked",
  logLevel: "info",
});
// diagram-js.css and bpmn-js.css, concatenated by esbuild's CSS bundler
await build({
  stdin: {
    contents: '@import "bpmn-js/dist/assets/diagram-js.css"; @import "bpmn-js/dist/assets/bpmn-js.css";',
    resolveDir: root,
    loader: "css",
  },
  bundle: true,
  minify: true,
  outfile: join(out, "diagram.css"),
  loader: { ".woff": "file", ".woff2": "file", ".eot": "file", ".ttf": "file", ".svg": "file" },
  logLevel: "info",
});

// the modeller (coordinators only): bpmn-js Modeler with the properties panel, the form-js editor, the diff view;
// their CSS (imported by the scripts) comes out as modeller.css and modeller-forms.css
await build({
  entryPoints: {
    modeller: join(root, "webapp", "assets", "modeller.js"),
    "modeller-forms": join(root, "webapp", "assets", "modeller-forms.js"),
    "modeller-diff": join(root, "webapp", "assets", "modeller-diff.js"),
  },
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020"],
  outdir: out,
  legalComments: "linked",
  loader: { ".woff": "file", ".woff2": "file", ".eot": "file", ".ttf": "file", ".svg": "dataurl" },
  logLevel: "info",
});

// the monitor's diagrams (webapp/assets/monitor.js): markers and overlays on the viewer; its CSS is diagram.css
// above plus the static webapp/static/css/monitor.css
await build({
  entryPoints: { monitor: join(root, "webapp", "assets", "monitor.js") },
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020"],
  outdir: out,
  legalComments: "linked",
  logLevel: "info",
});
