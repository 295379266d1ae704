/** A process's memory and CPU time from /proc (Linux), sampled while a benchmark runs. */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

export interface MemorySample {
  /** Resident set size now, in KiB. */
  rssKiB: number;
  /**
   * Anonymous resident memory (heap, stacks, buffers), in KiB. The rest of RSS is mostly the
   * mapped node executable (file-backed, shared between processes and reclaimable).
   */
  anonKiB: number;
  /** Peak resident set size since the process started (the kernel's high-water mark), in KiB. */
  hwmKiB: number;
}

function statusField(status: string, field: string): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, "m").exec(status);
  if (match?.[1] === undefined) throw new Error(`no ${field} in /proc status`);
  return Number(match[1]);
}

export function readMemory(pid: number): MemorySample {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return {
    rssKiB: statusField(status, "VmRSS"),
    anonKiB: statusField(status, "RssAnon"),
    hwmKiB: statusField(status, "VmHWM"),
  };
}

let clockTicks: number | undefined;
function ticksPerSecond(): number {
  clockTicks ??= Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  return clockTicks;
}

/** User plus system CPU time the process has used, in milliseconds (10 ms resolution usually). */
export function readCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name, which is in parentheses and may contain spaces.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return ((utime + stime) * 1000) / ticksPerSecond();
}

export interface MemoryPeak {
  rssKiB: number;
  anonKiB: number;
}

/** Samples memory every `intervalMs` and keeps the peaks; `take` returns them and starts over. */
export class RssSampler {
  #peak: MemoryPeak = { rssKiB: 0, anonKiB: 0 };
  readonly #timer: NodeJS.Timeout;

  constructor(
    private readonly pid: number,
    intervalMs = 50,
  ) {
    this.#timer = setInterval(() => {
      this.sample();
    }, intervalMs);
  }

  sample(): void {
    try {
      const now = readMemory(this.pid);
      this.#peak = {
        rssKiB: Math.max(this.#peak.rssKiB, now.rssKiB),
        anonKiB: Math.max(this.#peak.anonKiB, now.anonKiB),
      };
    } catch {
      // The process exited; the caller notices that on its own.
    }
  }

  /** Peaks since the last `take`. */
  take(): MemoryPeak {
    this.sample();
    const peak = this.#peak;
    this.#peak = { rssKiB: 0, anonKiB: 0 };
    return peak;
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

/**
 * Time the process's main thread (the JavaScript thread) spent waiting for a CPU while runnable,
 * in milliseconds. Grows when other processes compete for the CPU: the direct measure of how
 * much a busy machine delayed the webhook.
 */
export function readRunQueueWaitMs(pid: number): number {
  const [, waitNs = "0"] = readFileSync(`/proc/${pid}/schedstat`, "utf8").trim().split(" ");
  return Number(waitNs) / 1e6;
}
