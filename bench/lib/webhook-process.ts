/**
 * Runs the real webhook (`dso-webhook`, packages/webhook/dist/main.js or the bundle) as a child
 * process on loopback, pinned to one CPU when `taskset` exists, and measures start-to-ready:
 * spawn → first 200 from GET /readyz over HTTPS.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { get } from "node:https";
import { createServer } from "node:net";
import { performance } from "node:perf_hooks";
import type { Target } from "./https-driver.js";

export interface WebhookLaunch {
  entry: string;
  certFile: string;
  keyFile: string;
  ca: string;
  servername: string;
  /** CPU to pin the webhook to with taskset, or undefined to leave it unpinned. */
  cpu: number | undefined;
  /** Extra node flags, e.g. --cpu-prof. */
  nodeArgs: readonly string[];
  /** Give up waiting for readiness after this long. */
  readyTimeoutMs: number;
}

export interface RunningWebhook {
  pid: number;
  target: Target;
  /** Spawn → first 200 on /readyz, in ms. */
  readyMs: number;
  /** Spawn → the "dso-webhook listening" log line reached us, in ms. */
  listeningMs: number | undefined;
  /** Log lines written so far (one per review at the default info level). */
  logLines(): number;
  /** SIGTERM, then the exit code (0 after a clean graceful shutdown). */
  stop(): Promise<number | null>;
  /** stderr so far, for error messages. */
  stderr(): string;
}

/** A free loopback port (the kernel's pick, released for the webhook to bind). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => {
        if (typeof address === "object" && address !== null) resolve(address.port);
        else reject(new Error("no port"));
      });
    });
  });
}

/** One GET /readyz on a fresh connection: the status, or 0 when nothing answers yet. */
function probeReady(target: Target): Promise<number> {
  return new Promise((resolve) => {
    const req = get(
      {
        host: target.host,
        port: target.port,
        path: "/readyz",
        ca: target.ca,
        servername: target.servername,
        agent: false,
        timeout: 1000,
      },
      (res) => {
        res.resume();
        res.on("end", () => {
          resolve(res.statusCode ?? 0);
        });
      },
    );
    req.on("timeout", () => req.destroy());
    req.on("error", () => {
      resolve(0);
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function startWebhook(launch: WebhookLaunch): Promise<RunningWebhook> {
  const port = await freePort();
  const target: Target = { host: "127.0.0.1", port, ca: launch.ca, servername: launch.servername };
  const args = [
    ...launch.nodeArgs,
    launch.entry,
    "--host=127.0.0.1",
    `--port=${port}`,
    `--tls-cert=${launch.certFile}`,
    `--tls-key=${launch.keyFile}`,
    "--log-level=info",
  ];
  const [command, argv] =
    launch.cpu === undefined
      ? [process.execPath, args]
      : ["taskset", ["-c", String(launch.cpu), process.execPath, ...args]];
  const startedAt = performance.now();
  // NODE_ENV as in the image (Dockerfile.webhook); no DSO_* variables leak in from the caller.
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("DSO_")),
  );
  const child: ChildProcess = spawn(command, argv, {
    env: { ...env, NODE_ENV: "production" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let lines = 0;
  let listeningMs: number | undefined;
  let stderr = "";
  let pending = "";
  // Logs are drained as a container runtime would; the first "listening" line is timed.
  child.stdout?.setEncoding("utf8");
  child.stdout?.on("data", (chunk: string) => {
    const parts = (pending + chunk).split("\n");
    pending = parts.pop() ?? "";
    lines += parts.length;
    if (listeningMs === undefined && parts.some((l) => l.includes("dso-webhook listening"))) {
      listeningMs = performance.now() - startedAt;
    }
  });
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (chunk: string) => {
    if (stderr.length < 20_000) stderr += chunk;
  });
  let exited: number | null | undefined;
  const exit = new Promise<number | null>((resolve) => {
    child.on("exit", (code) => {
      exited = code;
      resolve(code);
    });
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`cannot start ${command}`);

  let readyMs: number | undefined;
  while (readyMs === undefined) {
    if (exited !== undefined) {
      throw new Error(`webhook exited with ${String(exited)} before ready:\n${stderr}`);
    }
    const elapsed = performance.now() - startedAt;
    if (elapsed > launch.readyTimeoutMs) {
      child.kill("SIGKILL");
      throw new Error(`webhook not ready after ${launch.readyTimeoutMs} ms:\n${stderr}`);
    }
    const status = await probeReady(target);
    if (status === 200) readyMs = performance.now() - startedAt;
    else await sleep(2);
  }

  return {
    pid,
    target,
    readyMs,
    get listeningMs() {
      return listeningMs;
    },
    logLines: () => lines,
    stderr: () => stderr,
    async stop() {
      if (exited === undefined) child.kill("SIGTERM");
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<null>((resolve) => {
        timer = setTimeout(() => {
          child.kill("SIGKILL");
          resolve(null);
        }, 15_000);
      });
      const code = await Promise.race([exit, timeout]);
      clearTimeout(timer);
      return code;
    },
  };
}
