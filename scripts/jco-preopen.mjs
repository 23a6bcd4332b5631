// A Node preload (`node --import ./scripts/jco-preopen.mjs <jco.js> componentize ...`) that lets
// `jco componentize` read the WIT directory and the app's source.
//
// Why: jco 1.35 reads the WIT with wasm-tools compiled to a component and run in Node on
// @bytecodealliance/preview2-shim (componentize-js's splicer runs the same way). The shim
// (0.26.1 here) preopens no directory unless its embedder adds one, and jco adds none, so every
// path lookup fails: "failed to get path metadata: No such file or directory (os error 44)".
// This preload preopens the repository (and nothing above it) in the shim those components
// import, before jco starts.
//
// The directories to preopen can be changed with EDGENN_JCO_PREOPEN (':'-separated absolute
// host paths, each seen by the components at the same path); the default is the repository.
import { createRequire } from "node:module";
import { existsSync, realpathSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const dirs = (process.env.EDGENN_JCO_PREOPEN || repo).split(":").filter(Boolean);
for (const dir of dirs) {
  if (!isAbsolute(dir)) {
    throw new Error(`jco-preopen: ${dir} is not an absolute path`);
  }
}

// The shim as the packages that run the components resolve it (npm may nest a copy under one
// of them): each distinct copy gets the preopens, since each keeps its own list.
const jco = createRequire(realpathSync(process.argv[1]));
const shims = new Set();
for (const pkg of ["@bytecodealliance/jco-transpile", "@bytecodealliance/componentize-js"]) {
  // Found as Node would find it from jco; by directory, since neither package exports a file
  // that require() may resolve.
  const dir = jco
    .resolve.paths(pkg)
    .map((p) => join(p, pkg))
    .find((d) => existsSync(join(d, "package.json")));
  if (dir) {
    const from = createRequire(join(dir, "package.json"));
    shims.add(from.resolve("@bytecodealliance/preview2-shim/filesystem"));
  }
}
if (shims.size === 0) {
  throw new Error(`jco-preopen: no preview2-shim found from ${process.argv[1]}`);
}
for (const shim of shims) {
  const { _addPreopen } = await import(pathToFileURL(shim).href);
  for (const dir of dirs) {
    _addPreopen(dir, dir);
  }
}
