// Bundles the test host (host.ts) with the packages of ../../console (its npm devDependencies):
//   node build.mjs <console dir> <out dir>   -> <out dir>/host.js and index.html
import { createRequire } from "node:module";
import { copyFile, mkdir } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const consoleDir = resolve(process.argv[2]);
const out = resolve(process.argv[3]);
const require = createRequire(join(consoleDir, "package.json"));
const { build } = await import(pathToFileURL(require.resolve("esbuild")).href);
await mkdir(out, { recursive: true });
await build({
  entryPoints: [join(here, "host.ts")],
  bundle: true,
  format: "esm",
  target: "es2022",
  outfile: join(out, "host.js"),
  nodePaths: [join(consoleDir, "node_modules")],
  logLevel: "warning",
});
await copyFile(join(here, "index.html"), join(out, "index.html"));
