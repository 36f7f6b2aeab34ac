// Builds the web console into ../kk_etcd_mcp/ui/ (or the directory given as the first argument):
// console.js (every module and library bundled by esbuild), console.css (minified by esbuild), and
// index.html and icon.svg (copied). Then the MCP App views into ../kk_etcd_mcp/mcp_apps/ (or the second
// argument): one self-contained HTML document per view (src/apps/<view>.ts), script and styles inlined.
// The output depends only on the sources and the locked packages, so a fresh build reproduces the
// committed files byte for byte (tests/test_console_build.py checks it).
import { build } from "esbuild";
import { copyFile, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? join(here, "..", "kk_etcd_mcp", "ui"));
const appsOut = resolve(process.argv[3] ?? join(here, "..", "kk_etcd_mcp", "mcp_apps"));
const APP_VIEWS = ["services", "history", "review", "cluster"];

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

// zod's `z` namespace (which ext-apps imports whole) re-exports every translation of its error messages,
// 260 KB no view uses: zod itself loads English directly, so the views get an empty `z.locales`.
const noZodLocales = {
  name: "no-zod-locales",
  setup(b) {
    b.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      args.importer.includes("zod") ? { path: "zod-locales", namespace: "no-zod-locales" } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: "no-zod-locales" }, () => ({ contents: "export {};", loader: "js" }));
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
await writeFile(join(out, "licenses.txt"), await licenses(Object.keys(result.metafile.inputs), "The web console"));

// The MCP App views: a host renders a ui:// resource as one document in a sandboxed iframe, with no
// server to fetch files from, so each view's script and the styles go inline.
await mkdir(appsOut, { recursive: true });
const styles = await build({
  entryPoints: [join(here, "static", "app.css")],
  bundle: true, // app.css imports console.css: one stylesheet
  minify: true,
  charset: "utf8",
  write: false,
  outfile: "app.css",
  logLevel: "warning",
});
const template = await readFile(join(here, "static", "app.html"), "utf8");
const appInputs = new Set();
for (const view of APP_VIEWS) {
  const bundle = await build({
    entryPoints: [join(here, "src", "apps", `${view}.ts`)],
    bundle: true,
    format: "iife",
    target: "es2022",
    minify: true,
    legalComments: "none",
    charset: "utf8",
    write: false,
    outfile: `${view}.js`,
    plugins: [noAjv, noZodLocales],
    metafile: true,
    logLevel: "warning",
  });
  Object.keys(bundle.metafile.inputs).forEach((input) => appInputs.add(input));
  const html = template
    .replace("/*STYLE*/", () => inline(styles.outputFiles[0].text, "style"))
    .replace("/*SCRIPT*/", () => inline(bundle.outputFiles[0].text, "script"));
  await writeFile(join(appsOut, `${view}.html`), html);
}
await writeFile(join(appsOut, "licenses.txt"), await licenses([...appInputs].sort(), "The MCP App views"));

/** Text made safe inside an inline <script> or <style>: nothing in it may close the element early. */
function inline(text, element) {
  return text.trim().replaceAll(`</${element}`, `<\\/${element}`).replaceAll("<!--", "<\\!--");
}

/** The name, version and licence text of every npm package that went into the bundle. */
async function licenses(inputs, what) {
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
  return `${what} of kk-etcd-mcp bundle${what.endsWith("s") ? "" : "s"} these packages:\n\n${parts.join("\n" + "-".repeat(72) + "\n\n")}`;
}
