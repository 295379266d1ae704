// What an image runs, read from its Dockerfile, so the e2e suite starts each image's exact
// entrypoint with the image's environment (issue 8: images cannot be built here, so the suite
// tests what they run). The runtime stage's ENTRYPOINT, ENV, USER and WORKDIR are parsed. The
// runners bind-mount the directory of the Node that runs the suite where the distroless image has
// its node (`nodeBinMount`), so the ENTRYPOINT runs unchanged and nothing depends on where the
// repository lives (a /tmp mount inside the namespace must not hide it).
import { readFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { repoRoot } from "../global-setup.js";

/** The node binary in the runtime base image (gcr.io/distroless/nodejs24). */
const IMAGE_NODE = "/nodejs/bin/node";

export interface ImageRuntime {
  /** ENTRYPOINT as the image has it. */
  entrypoint: string[];
  env: Record<string, string>;
  uid: number;
  gid: number;
  workdir: string;
}

export function imageRuntime(name: "agent" | "webhook"): ImageRuntime {
  const text = readFileSync(join(repoRoot, `Dockerfile.${name}`), "utf8").replace(/\\\n/g, " ");
  // Only the last stage is the image; earlier stages build it.
  const stages = text.split(/^FROM /m);
  const runtime = stages[stages.length - 1] ?? "";
  const instruction = (word: string): string[] =>
    runtime
      .split("\n")
      .filter((l) => l.startsWith(`${word} `))
      .map((l) => l.slice(word.length + 1).trim());

  const entry = instruction("ENTRYPOINT").at(-1);
  if (entry === undefined)
    throw new Error(`Dockerfile.${name}: no ENTRYPOINT in the runtime stage`);
  const entrypoint = JSON.parse(entry) as string[];
  const env: Record<string, string> = {};
  for (const line of instruction("ENV")) {
    for (const m of line.matchAll(/(\w+)=("[^"]*"|\S+)/g)) {
      const [, key, value] = m;
      if (key !== undefined && value !== undefined) env[key] = value.replace(/^"|"$/g, "");
    }
  }
  const user = instruction("USER").at(-1) ?? "0";
  const [uid, gid] = user.split(":").map(Number);
  if (uid === undefined || !Number.isInteger(uid))
    throw new Error(`Dockerfile.${name}: USER must be numeric, got "${user}"`);
  return {
    entrypoint,
    env,
    uid,
    gid: gid ?? uid,
    workdir: instruction("WORKDIR").at(-1) ?? "/",
  };
}

/** Bind mount that puts this process's Node where the image has its node binary. */
export function nodeBinMount(): { source: string; target: string } {
  if (basename(process.execPath) !== basename(IMAGE_NODE))
    throw new Error(`expected the suite to run on a binary named node, got ${process.execPath}`);
  return { source: dirname(process.execPath), target: dirname(IMAGE_NODE) };
}
