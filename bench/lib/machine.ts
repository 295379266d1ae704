/**
 * The machine a figure was taken on. The load average goes next to every figure: on a shared
 * machine a busy neighbour makes latencies and throughput pessimistic, never optimistic.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { cpus, loadavg, totalmem, release } from "node:os";

export interface MachineInfo {
  cpuModel: string;
  /** Logical CPUs visible to this process. */
  cores: number;
  nodeVersion: string;
  platform: string;
  kernel: string;
  totalMemoryMiB: number;
  /** 1, 5 and 15 minute load averages when the benchmark started. */
  loadAverage: [number, number, number];
  /** Whether `taskset` is available to pin processes to a CPU. */
  taskset: boolean;
}

/** The 1, 5 and 15 minute load averages, rounded to two decimals. */
export function loadAverage(): [number, number, number] {
  const [one = 0, five = 0, fifteen = 0] = loadavg().map((l) => Math.round(l * 100) / 100);
  return [one, five, fifteen];
}

/** `load 7.95 6.10 5.02 on 2 cores`: printed beside every table. */
export function describeLoad(load: readonly number[] = loadAverage()): string {
  return `load average ${load.map((l) => l.toFixed(2)).join(" ")} on ${cpus().length} cores`;
}

export function hasTaskset(): boolean {
  return spawnSync("taskset", ["--version"], { stdio: "ignore" }).status === 0;
}

/**
 * CPUs this process may run on (`Cpus_allowed_list` in /proc/self/status, e.g. `0-1,4`), so
 * pinning picks CPUs a container's cpuset allows. Empty when unknown.
 */
export function allowedCpus(): number[] {
  let list: string | undefined;
  try {
    list = /^Cpus_allowed_list:\s*(\S+)$/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1];
  } catch {
    return [];
  }
  if (list === undefined) return [];
  return list.split(",").flatMap((part) => {
    const [from = Number.NaN, to = from] = part.split("-").map(Number);
    return Number.isInteger(from) && Number.isInteger(to)
      ? Array.from({ length: to - from + 1 }, (_, i) => from + i)
      : [];
  });
}

export function machineInfo(): MachineInfo {
  const cpu = cpus();
  return {
    cpuModel: cpu[0]?.model.trim() ?? "unknown",
    cores: cpu.length,
    nodeVersion: process.version,
    platform: `${process.platform}-${process.arch}`,
    kernel: release(),
    totalMemoryMiB: Math.round(totalmem() / 2 ** 20),
    loadAverage: loadAverage(),
    taskset: hasTaskset(),
  };
}
