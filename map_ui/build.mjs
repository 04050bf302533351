// Bundles the two pages into dist/: content-hashed assets under dist/assets/
// (served as immutable) and the HTML pages that name them.
import { build } from "esbuild";
import { copyFile, mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { gzipSync } from "node:zlib";
import path from "node:path";

const root = path.dirname(new URL(import.meta.url).pathname);
const dist = path.join(root, "dist");
const pages = ["rider", "ops"];

await rm(dist, { recursive: true, force: true });
await mkdir(path.join(dist, "assets"), { recursive: true });

const result = await build({
  entryPoints: Object.fromEntries(pages.map((p) => [p, path.join(root, "src", `${p}.js`)])),
  outdir: path.join(dist, "assets"),
  entryNames: "[name]-[hash]",
  chunkNames: "shared-[hash]",
  splitting: true, // both pages share one cached MapLibre chunk
  assetNames: "[name]-[hash]",
  bundle: true,
  minify: true,
  sourcemap: true,
  format: "esm",
  target: ["es2020"],
  metafile: true,
  logLevel: "warning",
});

// entry name -> {js, css} as served under /assets/
const outputs = {};
for (const [file, meta] of Object.entries(result.metafile.outputs)) {
  if (!meta.entryPoint) continue;
  const name = path.basename(meta.entryPoint, ".js");
  outputs[name] = { js: path.basename(file), css: meta.cssBundle && path.basename(meta.cssBundle) };
}

for (const page of pages) {
  const template = await readFile(path.join(root, "static", `${page}.html`), "utf8");
  const { js, css } = outputs[page];
  const html = template
    .replaceAll("{{js}}", `/assets/${js}`)
    .replaceAll("{{css}}", css ? `/assets/${css}` : "");
  await writeFile(path.join(dist, `${page}.html`), html);
}
await copyFile(path.join(root, "static", "icon.svg"), path.join(dist, "assets", "icon.svg"));
const maplibreDist = path.join(root, "node_modules", "maplibre-gl", "dist");
for (const file of ["maplibre-gl-worker.mjs", "maplibre-gl-worker.mjs.map"]) {
  await copyFile(path.join(maplibreDist, file), path.join(dist, "assets", file));
}
// Pre-compressed once here, so the gateway never gzips per request.
for (const file of await readdir(path.join(dist, "assets"))) {
  if (!/\.(js|mjs|css|svg)$/.test(file)) continue;
  const full = path.join(dist, "assets", file);
  await writeFile(`${full}.gz`, gzipSync(await readFile(full), { level: 9 }));
}
await writeFile(path.join(dist, ".built"), new Date().toISOString() + "\n");
console.log(`map_ui: built ${pages.join(", ")} into ${path.relative(process.cwd(), dist) || "dist"}`);
