/**
 * A loopback HTTP proxy in front of Vault/OpenBao that counts every request the agents make, by
 * kind (login, read, token renewal, ...), and can throttle like Vault's rate-limit quotas: above
 * `ratePerSecond` (token bucket with `burst`) it answers 429 with `Retry-After` and Vault's error
 * body instead of forwarding. Counting here, rather than in OpenBao's audit log, also sees the
 * requests that were refused.
 */
import { Agent, createServer, request, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createTlsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";

export type RequestKind =
  | "login"
  | "read"
  | "mount lookup"
  | "token lookup"
  | "token renew"
  | "token revoke"
  | "lease renew"
  | "lease revoke"
  | "other";

/** What a request to Vault is for, from its method and path (`/v1/...`). */
export function requestKind(method: string, url: string): RequestKind {
  const path = (url.split("?")[0] ?? "").replace(/^\/v1\//, "");
  if (path.startsWith("auth/token/lookup-self")) return "token lookup";
  if (path.startsWith("auth/token/renew-self")) return "token renew";
  if (path.startsWith("auth/token/revoke-self")) return "token revoke";
  if (path.startsWith("auth/") && path.endsWith("/login")) return "login";
  if (path.startsWith("sys/leases/renew")) return "lease renew";
  if (path.startsWith("sys/leases/revoke")) return "lease revoke";
  if (path.startsWith("sys/internal/ui/mounts/")) return "mount lookup";
  if (method === "GET" && !path.startsWith("sys/")) return "read";
  return "other";
}

export interface ProxyEvent {
  /** ms since the proxy started. */
  at: number;
  kind: RequestKind;
  /** Path without `/v1/` and query. */
  path: string;
  /** Status sent to the agent (429 when throttled here). */
  status: number;
  throttled: boolean;
}

export interface ThrottleOptions {
  /** Requests per second let through; undefined: no throttling. */
  ratePerSecond?: number;
  /** Bucket size (requests let through at once after a quiet period); default = ratePerSecond. */
  burst?: number;
  /** Seconds in the Retry-After header of a 429; default 1. */
  retryAfterSeconds?: number;
}

export interface ProxyOptions extends ThrottleOptions {
  /**
   * Serve HTTPS with this certificate (PEM) instead of HTTP, so the agents pay for TLS as they do
   * against a real Vault; the proxy still talks plain HTTP to the dev server behind it.
   */
  tls?: { cert: string; key: string };
}

export interface VaultProxy {
  /** http(s)://127.0.0.1:<port>: give this to the agents as the Vault address. */
  address: string;
  events: ProxyEvent[];
  /** Counts by kind (forwarded and throttled) since the last reset. */
  counts(since?: number): Record<RequestKind | "throttled", number>;
  /** Client connections accepted so far (TCP, or TLS handshakes when serving HTTPS). */
  connections(): number;
  /** ms since the proxy started (the clock of `events`). */
  now(): number;
  /** Changes throttling from now on. */
  throttle(options: ThrottleOptions): void;
  close(): Promise<void>;
}

const KINDS: RequestKind[] = [
  "login",
  "read",
  "mount lookup",
  "token lookup",
  "token renew",
  "token revoke",
  "lease renew",
  "lease revoke",
  "other",
];

export async function startVaultProxy(
  upstream: string,
  options: ProxyOptions = {},
): Promise<VaultProxy> {
  const target = new URL(upstream);
  if (target.protocol !== "http:")
    throw new Error(`vault-proxy: upstream must be http, got ${upstream}`);
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  const started = performance.now();
  const now = (): number => performance.now() - started;
  const events: ProxyEvent[] = [];
  let throttle = options;
  let tokens = throttle.burst ?? throttle.ratePerSecond ?? 0;
  let refilledAt = now();

  const allow = (): boolean => {
    const rate = throttle.ratePerSecond;
    if (rate === undefined) return true;
    const burst = throttle.burst ?? rate;
    const t = now();
    tokens = Math.min(burst, tokens + ((t - refilledAt) / 1000) * rate);
    refilledAt = t;
    if (tokens < 1) return false;
    tokens -= 1;
    return true;
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const method = req.method ?? "GET";
    const url = req.url ?? "/";
    const path = (url.split("?")[0] ?? "").replace(/^\/v1\//, "");
    const kind = requestKind(method, url);
    const record = (status: number, throttled: boolean): void => {
      events.push({ at: now(), kind, path, status, throttled });
    };
    if (!allow()) {
      req.resume();
      // What Vault answers when a rate-limit quota is exceeded.
      const body = JSON.stringify({
        errors: [`request path "${path}": rate limit quota exceeded`],
      });
      res.writeHead(429, {
        "content-type": "application/json",
        "content-length": Buffer.byteLength(body),
        "retry-after": String(throttle.retryAfterSeconds ?? 1),
      });
      res.end(body);
      record(429, true);
      return;
    }
    const up = request(
      {
        agent,
        host: target.hostname,
        port: target.port,
        method,
        path: url,
        headers: { ...req.headers, host: target.host },
      },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
        upRes.on("end", () => {
          record(upRes.statusCode ?? 502, false);
        });
      },
    );
    up.on("error", (err) => {
      if (!res.headersSent) res.writeHead(502, { "content-type": "application/json" });
      res.end(JSON.stringify({ errors: [`vault-proxy: ${err.message}`] }));
      record(502, false);
    });
    req.pipe(up);
  };

  const server =
    options.tls === undefined
      ? createServer(handle)
      : createTlsServer({ ...options.tls, minVersion: "TLSv1.2" }, handle);
  server.keepAliveTimeout = 30_000;
  let connections = 0;
  server.on(options.tls === undefined ? "connection" : "secureConnection", () => {
    connections++;
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    address: `${options.tls === undefined ? "http" : "https"}://127.0.0.1:${port}`,
    events,
    counts(since = 0) {
      const out = Object.fromEntries([...KINDS, "throttled"].map((k) => [k, 0])) as Record<
        RequestKind | "throttled",
        number
      >;
      for (const e of events) {
        if (e.at < since) continue;
        if (e.throttled) out.throttled++;
        else out[e.kind]++;
      }
      return out;
    },
    now,
    connections: () => connections,
    throttle(next) {
      throttle = next;
      tokens = next.burst ?? next.ratePerSecond ?? 0;
      refilledAt = now();
    },
    close() {
      agent.destroy();
      server.closeAllConnections();
      return new Promise((resolve) =>
        server.close(() => {
          resolve();
        }),
      );
    },
  };
}
