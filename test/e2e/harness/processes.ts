// Child processes for the e2e suite: every server a test starts is registered here so that it is
// killed (its whole process group) when the test ends, when a hook fails, or on Ctrl-C/SIGTERM.
// Why process groups: etcd, kube-apiserver, `runuser`-wrapped postgres and `unshare`-wrapped agents
// spawn children of their own; killing only the direct child would leave them holding ports.
import { spawn } from "node:child_process";
import { createWriteStream, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface SpawnOptions {
  /** Full environment of the child (not merged with process.env unless the caller does it). */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Also append everything the process prints to this file (kept after the run for debugging). */
  logFile?: string;
  /** Text written to stdin, which is then closed. */
  input?: string;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ManagedProcess {
  name: string;
  pid: number;
  /** stdout and stderr interleaved as received. */
  logs(): string;
  /** Resolves when the process has exited (never rejects). */
  exited: Promise<ExitInfo>;
  /** Whether the process has exited already. */
  hasExited(): boolean;
  /** SIGTERM to the process group, SIGKILL after `graceMs` (default 5 s). Idempotent. */
  stop(graceMs?: number): Promise<ExitInfo>;
}

const running = new Set<ManagedProcess>();
const tempDirs = new Set<string>();
const cleanups = new Set<() => Promise<void> | void>();

/** Keep at most this much output per process in memory; servers can be chatty. */
const MAX_LOG_CHARS = 4_000_000;

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // The group is gone already; try the process itself in case it left its group.
    try {
      process.kill(pid, signal);
    } catch {
      // gone
    }
  }
}

export function spawnManaged(
  name: string,
  cmd: string,
  args: readonly string[],
  opts: SpawnOptions = {},
): ManagedProcess {
  installSignalHandlers();
  const child = spawn(cmd, args, {
    env: opts.env ?? process.env,
    cwd: opts.cwd,
    detached: true, // own process group, so stop() reaches grandchildren
    stdio: [opts.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
  });
  if (child.pid === undefined) {
    // spawn failed synchronously (ENOENT is reported through 'error' but pid is undefined).
    throw new Error(`${name}: could not start ${cmd} (is the binary there and executable?)`);
  }
  const pid = child.pid;
  let out = "";
  const file =
    opts.logFile === undefined ? undefined : createWriteStream(opts.logFile, { flags: "a" });
  const onData = (chunk: Buffer): void => {
    const text = chunk.toString("utf8");
    out += text;
    if (out.length > MAX_LOG_CHARS) out = out.slice(out.length - MAX_LOG_CHARS / 2);
    file?.write(text);
  };
  child.stdout?.on("data", onData);
  child.stderr?.on("data", onData);
  if (opts.input !== undefined && child.stdin !== null) child.stdin.end(opts.input);

  let done = false;
  const exited = new Promise<ExitInfo>((resolve) => {
    child.on("error", (err) => {
      out += `\n[harness] ${name}: ${err.message}\n`;
    });
    child.on("close", (code, signal) => {
      done = true;
      file?.end();
      resolve({ code, signal });
    });
  });

  let stopping: Promise<ExitInfo> | undefined;
  const proc: ManagedProcess = {
    name,
    pid,
    logs: () => out,
    exited,
    hasExited: () => done,
    stop(graceMs = 5_000) {
      stopping ??= (async () => {
        if (!done) {
          killGroup(pid, "SIGTERM");
          const timer = setTimeout(() => {
            killGroup(pid, "SIGKILL");
          }, graceMs);
          const info = await exited;
          clearTimeout(timer);
          // Grandchildren that ignored SIGTERM must not outlive the test.
          killGroup(pid, "SIGKILL");
          running.delete(proc);
          return info;
        }
        killGroup(pid, "SIGKILL");
        running.delete(proc);
        return exited;
      })();
      return stopping;
    },
  };
  running.add(proc);
  void exited.then(() => {
    if (!stopping) running.delete(proc);
  });
  return proc;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a short command to completion (bounded), capturing stdout and stderr separately. */
export function run(
  cmd: string,
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      env: opts.env ?? process.env,
      cwd: opts.cwd,
      detached: true,
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString("utf8")));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString("utf8")));
    child.stdin.on("error", () => undefined); // the child may exit before reading its input
    child.stdin.end(opts.input ?? "");
    const timer = setTimeout(() => {
      if (child.pid !== undefined) killGroup(child.pid, "SIGKILL");
      reject(
        new Error(
          `${cmd} ${args.join(" ")} did not finish within ${timeoutMs} ms\nstdout: ${tail(stdout)}\nstderr: ${tail(stderr)}`,
        ),
      );
    }, timeoutMs);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`could not run ${cmd}: ${err.message}`));
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal === null ? 1 : 128), stdout, stderr });
    });
  });
}

/** A TCP port that was free on 127.0.0.1 a moment ago (the OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      if (addr === null || typeof addr === "string") {
        srv.close();
        reject(new Error("freePort: no TCP address"));
        return;
      }
      const port = addr.port;
      srv.close(() => {
        resolve(port);
      });
    });
  });
}

export interface WaitOptions {
  timeoutMs: number;
  /** What should have happened, for the failure message: "kube-apiserver /readyz to return ok". */
  what: string;
  intervalMs?: number;
  /** Processes whose last log lines are quoted in the failure message; a dead one fails fast. */
  processes?: readonly ManagedProcess[];
}

export function tail(text: string, lines = 20): string {
  const all = text.trimEnd().split("\n");
  return all.slice(-lines).join("\n");
}

/**
 * Polls `fn` until it returns a value other than undefined/false (thrown errors count as "not
 * yet"). On timeout, throws naming `what`, the last error, and the last lines of each process.
 */
export async function waitFor<T>(
  fn: () => Promise<T | undefined | false> | T | undefined | false,
  opts: WaitOptions,
): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  const interval = opts.intervalMs ?? 200;
  let lastError = "";
  for (;;) {
    const dead = opts.processes?.find((p) => p.hasExited());
    if (dead !== undefined) {
      const info = await dead.exited;
      throw new Error(
        `waiting for ${opts.what}: ${dead.name} exited (code ${String(info.code)}, signal ${String(info.signal)})\n` +
          describeProcesses(opts.processes ?? []),
      );
    }
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
      lastError = "";
    } catch (err) {
      lastError = err instanceof Error ? err.message : String(err);
    }
    if (Date.now() >= deadline) {
      throw new Error(
        `timed out after ${opts.timeoutMs} ms waiting for ${opts.what}` +
          (lastError === "" ? "" : `\nlast error: ${lastError}`) +
          "\n" +
          describeProcesses(opts.processes ?? []),
      );
    }
    await sleep(interval);
  }
}

function describeProcesses(procs: readonly ManagedProcess[]): string {
  return procs
    .map((p) => `--- last lines of ${p.name} (pid ${p.pid}) ---\n${tail(p.logs())}`)
    .join("\n");
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A temp dir (mode 0700, from mkdtemp; chmod it for servers running as another user) removed at teardown. */
export function makeTempDir(prefix: string, base = tmpdir()): string {
  const dir = mkdtempSync(join(base, `${prefix}-`));
  tempDirs.add(dir);
  return dir;
}

/** Removes `dir` at teardown (also on Ctrl-C), like one made by makeTempDir. */
export function adoptTempDir(dir: string): void {
  installSignalHandlers();
  tempDirs.add(dir);
}

/** Removes a temp dir now (and forgets it). */
export function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  tempDirs.delete(dir);
}

/** Registers extra teardown work (e.g. unmounts) run before processes are killed. */
export function onTeardown(fn: () => Promise<void> | void): () => void {
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}

/** Stops every registered process and removes every temp dir. Safe to call more than once. */
export async function teardownAll(): Promise<void> {
  const fns = [...cleanups];
  cleanups.clear();
  for (const fn of fns.reverse()) {
    try {
      await fn();
    } catch (err) {
      console.error(
        `[harness] teardown step failed: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
  }
  await Promise.all([...running].map((p) => p.stop(3_000)));
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}

/** Synchronous last resort when the Node process itself is going away. */
function killAllNow(): void {
  for (const p of running) killGroup(p.pid, "SIGKILL");
  for (const dir of tempDirs) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // best effort during exit
    }
  }
}

let handlersInstalled = false;
function installSignalHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(sig, () => {
      killAllNow();
      process.kill(process.pid, sig);
    });
  }
  process.once("exit", killAllNow);
}
