// Bundles the webhook and the agent into self-contained ESM files for their images.
// Why: the agent runs in every injected pod, so start time and image size matter; one bundled
// file loads faster than resolving hundreds of node_modules files, and the image ships no
// devDependencies. Backends are code-split so a Vault pod never loads the Azure SDK.
import { build } from "esbuild";
import { rm } from "node:fs/promises";

const targets = [
  { name: "agent", entry: "packages/agent/src/main.ts" },
  { name: "webhook", entry: "packages/webhook/src/main.ts" },
];

for (const t of targets) {
  const outdir = `build/${t.name}`;
  await rm(outdir, { recursive: true, force: true });
  await build({
    entryPoints: { main: t.entry },
    outdir,
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "node",
    target: "node22",
    minifySyntax: true,
    sourcemap: "linked",
    legalComments: "linked",
    outExtension: { ".js": ".mjs" },
    // CommonJS dependencies inside an ESM bundle still call require(); give them one.
    banner: {
      js: "import { createRequire as __dsoCreateRequire } from 'node:module'; const require = __dsoCreateRequire(import.meta.url);",
    },
    logLevel: "warning",
  });
  console.log(`bundled ${t.name} -> ${outdir}/main.mjs`);
}
