// Builds the web console into ../kk_etcd_mcp/ui/ (or the directory given as the first argument):
// console.js (every module and library bundled by esbuild), console.css (minified by esbuild), and
// index.html and icon.svg (copied).
// The output depends only on the sources and the locked packages, so a fresh build reproduces the
// committed files byte for byte (tests/test_console_build.py checks it).
import { build } from "esbuild";
import { copyFile, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? join(here, "..", "kk_etcd_mcp", "ui"));

// The MCP SDK's client imports Ajv to check tool results against their output schemas. Ajv compiles
// schemas with `new Function`, which the console's Content-Security-Policy forbids (no 'unsafe-eval'),
// and the server checks its own results already. The console passes a validator of its own
// (src/mcp-http.ts), so Ajv is swapped for a stub and never shipped.
const noAjv = {
  name: "no-ajv",
  setup(b) {
    b.onResolve({ filter: /validation\/ajv-provider\.js$/ }, () => ({ path: "ajv-provider", namespace: "no-ajv" }));
    b.onLoad({ filter: /.*/, namespace: "no-ajv" }, () => ({
      contents:
        "export class AjvJsonSchemaValidator { constructor() { throw new Error('the console validates no schemas'); } }",
      loader: "js",
    }));
  },
};

await mkdir(out, { recursive: true });
const result = await build({
  entryPoints: [join(here, "src", "main.ts")],
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  legalComments: "none", // the licences go whole into licenses.txt instead
  charset: "utf8",
  outfile: join(out, "console.js"),
  plugins: [noAjv],
  metafile: true,
  logLevel: "warning",
});
await build({
  entryPoints: [join(here, "static", "console.css")],
  minify: true,
  charset: "utf8",
  outfile: join(out, "console.css"),
  logLevel: "warning",
});
await copyFile(join(here, "static", "index.html"), join(out, "index.html"));
await copyFile(join(here, "static", "icon.svg"), join(out, "icon.svg"));
await writeFile(join(out, "licenses.txt"), await licenses(Object.keys(result.metafile.inputs)));

/** The name, version and licence text of every npm package that went into the bundle. */
async function licenses(inputs) {
  const packages = new Set();
  for (const input of inputs) {
    const match = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//);
    if (match) packages.add(match[1]);
  }
  const parts = [];
  for (const name of [...packages].sort()) {
    const dir = join(here, "node_modules", name);
    const meta = JSON.parse(await readFile(join(dir, "package.json"), "utf8"));
    const file = (await readdir(dir)).find((f) => /^licen[cs]e(\.md|\.txt)?$/i.test(f));
    const text = file ? (await readFile(join(dir, file), "utf8")).trim() : `License: ${meta.license}`;
    parts.push(`${name} ${meta.version} (${meta.license})\n\n${text}\n`);
  }
  return `The web console of kk-etcd-mcp bundles these packages:\n\n${parts.join("\n" + "-".repeat(72) + "\n\n")}`;
}
