/**
 * Memory of a process from /proc/<pid>/smaps_rollup (Linux): resident, anonymous (heap, stacks,
 * buffers: what a container's working set cannot reclaim) and proportional (shared pages split
 * between the processes mapping them).
 */
import { readFileSync } from "node:fs";

export interface SmapsRollup {
  rssKiB: number;
  pssKiB: number;
  anonKiB: number;
}

export function readSmapsRollup(pid: number): SmapsRollup {
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
  const field = (name: string): number => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB$`, "m").exec(text);
    if (m?.[1] === undefined) throw new Error(`no ${name} in /proc/${pid}/smaps_rollup`);
    return Number(m[1]);
  };
  return { rssKiB: field("Rss"), pssKiB: field("Pss"), anonKiB: field("Anonymous") };
}

export const MiB = (kib: number): number => kib / 1024;
