// Leak checks: secret values and tokens must not appear in any log line (webhook, agent), in the pod
// objects the API server stores, in the environment or argv of the agent processes, or anywhere on
// disk outside the in-memory volume directories. Findings name the place and the needle's label,
// never the value itself (the test output must not leak either).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { Cluster } from "./cluster.js";
import { run } from "./processes.js";

const REPO = resolve(import.meta.dirname, "../../..");

export interface Needle {
  /** What it is, for the report: "KV v2 password", "agent Vault token". */
  label: string;
  value: string;
}

/** Adds the distinctive parts of a JWT (payload, signature) so a partly logged token is caught too. */
export function tokenNeedles(label: string, token: string): Needle[] {
  const out: Needle[] = [{ label, value: token }];
  const parts = token.split(".");
  if (parts.length === 3) {
    if ((parts[1] ?? "").length >= 16)
      out.push({ label: `${label} (payload)`, value: parts[1] ?? "" });
    if ((parts[2] ?? "").length >= 16)
      out.push({ label: `${label} (signature)`, value: parts[2] ?? "" });
  }
  return out;
}

function checkNeedles(needles: readonly Needle[]): void {
  for (const n of needles) {
    // Short needles would match by chance and make the check meaningless.
    if (n.value.length < 8) throw new Error(`leak needle "${n.label}" is too short to search for`);
  }
}

/** Searches texts (logs, JSON) for the needles; returns "<where>: <label>" for each hit. */
export function findInTexts(texts: Record<string, string>, needles: readonly Needle[]): string[] {
  checkNeedles(needles);
  const hits: string[] = [];
  for (const [where, text] of Object.entries(texts)) {
    for (const n of needles) if (text.includes(n.value)) hits.push(`${where}: ${n.label}`);
  }
  return hits;
}

/** The environment and argv of running processes (/proc/<pid>/environ and cmdline). */
export function findInProcesses(
  pids: Record<string, number>,
  needles: readonly Needle[],
): string[] {
  const texts: Record<string, string> = {};
  for (const [name, pid] of Object.entries(pids)) {
    try {
      texts[`${name} environ`] = readFileSync(`/proc/${pid}/environ`, "utf8");
      texts[`${name} argv`] = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    } catch (err) {
      throw new Error(
        `cannot read /proc/${pid} of ${name} (has it exited?): ${(err as Error).message}`,
      );
    }
  }
  return findInTexts(texts, needles);
}

/** Every pod in the namespace as the API server returns it (spec, annotations, env, status). */
export async function findInPods(
  cluster: Cluster,
  namespace: string,
  needles: readonly Needle[],
): Promise<string[]> {
  const json = await cluster.kubectlOk([
    "get",
    "pods,replicasets,deployments,configmaps,events",
    "-n",
    namespace,
    "-o",
    "json",
  ]);
  return findInTexts(
    {
      [`kubectl get pods,replicasets,deployments,configmaps,events -n ${namespace} -o json`]: json,
    },
    needles,
  );
}

export interface DiskScanOptions {
  /** Only files changed since this time (epoch ms) are searched: this run's files. */
  since: number;
  /** Directories to search; default: /tmp and the repository working tree. */
  dirs?: string[];
}

/**
 * Files on disk (not tmpfs) that contain a needle. Patterns go to grep on stdin, so the search
 * itself writes no secret to disk. node_modules and .git are skipped in the repository; only files
 * modified since `since` are searched (a leak from this run is in a file this run wrote).
 */
export async function findOnDisk(
  needles: readonly Needle[],
  opts: DiskScanOptions,
): Promise<string[]> {
  checkNeedles(needles);
  const dirs = opts.dirs ?? ["/tmp", REPO];
  const minutes = Math.max(1, Math.ceil((Date.now() - opts.since) / 60_000) + 1);
  // find: regular files on the same filesystem (-xdev keeps /dev/shm and /proc out), changed during this run.
  // xargs runs grep several times, so the patterns must be a file: it lives on tmpfs (memory),
  // 0600, and is removed right after.
  const patterns = join(mkdtempSync("/dev/shm/dso-e2e-leakscan-"), "patterns");
  writeFileSync(patterns, needles.map((n) => n.value).join("\n") + "\n", { mode: 0o600 });
  const script = [
    `find "$@" -xdev \\( -name node_modules -o -name .git -o -name 'bash_jobs.*' \\) -prune -o -type f -mmin -${minutes} -size -64M -print0 2>/dev/null`,
    `| xargs -0 -r grep -lF --binary-files=text -f "$0" -- 2>/dev/null || true`,
  ].join(" ");
  let r;
  try {
    r = await run("bash", ["-c", script, patterns, ...dirs], { timeoutMs: 120_000 });
  } finally {
    rmSync(dirname(patterns), { recursive: true, force: true });
  }
  const files = r.stdout.split("\n").filter((l) => l !== "");
  const hits: string[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, "latin1");
    } catch {
      continue;
    }
    for (const n of needles) if (text.includes(n.value)) hits.push(`${file}: ${n.label}`);
  }
  return hits;
}

export interface LeakCheck {
  needles: Needle[];
  /** Log texts by source name (webhook, each agent container, OpenBao, …). */
  logs: Record<string, string>;
  /** Running agent processes to inspect (name → pid). */
  pids?: Record<string, number>;
  cluster?: Cluster;
  namespaces?: string[];
  /** Epoch ms when the scenario started (disk scan window). */
  since: number;
  diskDirs?: string[];
}

/** Runs every check and throws one error listing all findings (labels and places, no values). */
export async function assertNoLeaks(check: LeakCheck): Promise<void> {
  const findings = [
    ...findInTexts(check.logs, check.needles),
    ...(check.pids !== undefined ? findInProcesses(check.pids, check.needles) : []),
  ];
  if (check.cluster !== undefined) {
    for (const ns of check.namespaces ?? [])
      findings.push(...(await findInPods(check.cluster, ns, check.needles)));
  }
  findings.push(
    ...(await findOnDisk(check.needles, {
      since: check.since,
      ...(check.diskDirs !== undefined ? { dirs: check.diskDirs } : {}),
    })),
  );
  if (findings.length > 0) {
    throw new Error(
      `secret values or tokens leaked (${check.needles.length} needles searched):\n  ${findings.join("\n  ")}`,
    );
  }
}
