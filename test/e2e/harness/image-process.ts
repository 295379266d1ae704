// Starts an image's entrypoint the way a container runtime would, without the image (none can be
// built here): the runtime stage's ENTRYPOINT, ENV, USER and WORKDIR (harness/image.ts), this run's
// bundle (what the image COPYs to its WORKDIR) bind-mounted read-only at the WORKDIR, the volumes
// bind-mounted at their targets, the root filesystem remounted read-only, in a private mount
// namespace (`unshare -m`), as the image's numeric user through setpriv with no capabilities and
// no_new_privs. The same technique as agent-runner.ts, for processes that are not pod containers
// (the webhook, the agent's `render` outside Kubernetes). Needs root.
import { chmodSync, chownSync, mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { bundleDir } from "../global-setup.js";
import { imageRuntime, nodeBinMount, type ImageRuntime } from "./image.js";
import { spawnManaged, type ManagedProcess } from "./processes.js";

export type ImageName = "agent" | "webhook";

export interface ImageMount {
  /** Host path (a directory, or a file when the target is a file). */
  source: string;
  /** Path inside the process's view. */
  target: string;
  readOnly?: boolean;
}

export interface ImageRunOptions {
  /** Arguments after the ENTRYPOINT (Compose `command`, Kubernetes `args`). */
  args?: readonly string[];
  /** The container's environment, on top of the image's ENV. */
  env?: Record<string, string>;
  /** Bind mounts, in order: a later one may cover an earlier one's source (e.g. /tmp last). */
  mounts?: readonly ImageMount[];
  /** Supplementary groups (Compose group_add, a pod's fsGroup). */
  groups?: readonly number[];
  /** Process name for logs and failure messages. */
  name?: string;
  logFile?: string;
}

export interface ImageProcess extends ManagedProcess {
  runtime: ImageRuntime;
  /** argv as exec'd after setpriv (the image's ENTRYPOINT, unchanged, plus args). */
  argv: string[];
  /** The complete environment the process got. */
  env: Record<string, string>;
}

/** This run's copy of the bundle an image ships (scripts/bundle.mjs output, build/<name>/). */
export function imageBundleDir(name: ImageName): string {
  return join(bundleDir(), name);
}

function sq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export function spawnImage(image: ImageName, opts: ImageRunOptions = {}): ImageProcess {
  const runtime = imageRuntime(image);
  if (runtime.uid === 0) throw new Error(`Dockerfile.${image}: the image runs as root`);
  const mounts = opts.mounts ?? [];
  const lines = ["set -e"];
  // Mount points are created on the host first (empty; every mount happens in the namespace).
  for (const m of mounts) {
    if (statSync(m.source).isDirectory()) lines.push(`mkdir -p ${sq(m.target)}`);
    else {
      lines.push(
        `mkdir -p "$(dirname ${sq(m.target)})"`,
        `[ -e ${sq(m.target)} ] || : > ${sq(m.target)}`,
      );
    }
  }
  const node = nodeBinMount();
  lines.push(`mkdir -p ${sq(runtime.workdir)} ${sq(node.target)}`, "mount -o remount,bind,ro /");
  lines.push(
    `mount --bind ${sq(imageBundleDir(image))} ${sq(runtime.workdir)}`,
    `mount -o remount,bind,ro ${sq(runtime.workdir)}`,
    `mount --bind ${sq(node.source)} ${sq(node.target)}`,
    `mount -o remount,bind,ro ${sq(node.target)}`,
  );
  for (const m of mounts) {
    lines.push(`mount --bind ${sq(m.source)} ${sq(m.target)}`);
    if (m.readOnly === true) lines.push(`mount -o remount,bind,ro ${sq(m.target)}`);
  }
  const groups = [...new Set([runtime.gid, ...(opts.groups ?? [])])];
  const argv = [...runtime.entrypoint, ...(opts.args ?? [])];
  const priv = [
    "setpriv",
    `--reuid=${runtime.uid}`,
    `--regid=${runtime.gid}`,
    `--groups=${groups.join(",")}`,
    "--bounding-set=-all",
    "--inh-caps=-all",
    "--no-new-privs",
    "--",
    ...argv,
  ];
  lines.push(`cd ${sq(runtime.workdir)}`, `exec ${priv.map(sq).join(" ")}`);
  const env = { ...runtime.env, ...opts.env, PATH: "/usr/local/bin:/usr/bin:/bin" };
  // unshare and sh exec, so the managed pid ends up being the image's node process itself.
  const proc = spawnManaged(
    opts.name ?? `${image}-image`,
    "unshare",
    ["-m", "--propagation", "private", "sh", "-c", lines.join("\n")],
    { env, ...(opts.logFile !== undefined ? { logFile: opts.logFile } : {}) },
  );
  return Object.assign(proc, { runtime, argv, env });
}

/** A directory (on tmpfs) owned by the image's user, to bind as a volume (Compose bind, emptyDir). */
export function volumeDir(
  parent: string,
  name: string,
  mode: number,
  uid: number,
  gid: number,
): string {
  const dir = join(parent, name);
  mkdirSync(dir, { recursive: true });
  chownSync(dir, uid, gid);
  chmodSync(dir, mode);
  return dir;
}
