/**
 * bench:backend: what the agents cost Vault. Every request goes through a counting proxy in front
 * of a local OpenBao (bench/lib/vault-proxy.ts), which can also throttle like Vault's rate-limit
 * quotas (429 with Retry-After).
 *
 * 1. One pod's lifetime: init, then the sidecar (state hand-off) for a window, with 10 files from
 *    5 distinct KV v2 secrets (two keys each) refreshed every `--refresh` seconds and one dynamic
 *    PostgreSQL credential (database engine, two files from one reference): requests per pod per
 *    hour by kind, logins (must be 1 while the token stays renewable: the token TTL is short so
 *    the sidecar renews it during the window), credentials issued (must be 1: the lease is
 *    renewed, not re-read) and roles created in PostgreSQL.
 * 2. Retry-After: one init container against a proxy that answers 429 with `Retry-After: 3` for
 *    its first seconds: when does the agent come back?
 * 3. Burst: N pods' init containers started at once against one OpenBao behind the throttling
 *    proxy: completion time, requests refused with 429, failures (must be zero).
 */
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { startPostgres, type Postgres } from "../../test/e2e/harness/postgres.js";
import { makeTempDir } from "../../test/e2e/harness/processes.js";
import { summarize } from "../lib/https-driver.js";
import { describeLoad, loadAverage } from "../lib/machine.js";
import { benchArgs } from "../lib/options.js";
import { runBench } from "./run-bench.js";
import { markdownTable, round, startReport } from "../lib/report.js";
import { startVaultProxy, type ProxyEvent } from "../lib/vault-proxy.js";
import {
  agentConfig,
  filesProblem,
  podDirs,
  prepareAgentBundle,
  spawnAgent,
  startBenchVault,
  type AgentRun,
  type SecretEntry,
} from "./agent-env.js";

const { smoke, values } = benchArgs({
  refresh: { type: "string", default: "5" },
  window: { type: "string", default: "120" },
  pods: { type: "string", default: "200" },
  rate: { type: "string", default: "100" },
  "token-ttl": { type: "string", default: "45" },
  "lease-ttl": { type: "string", default: "30" },
});
const refreshSeconds = smoke ? 2 : Number(values.refresh);
const windowSeconds = smoke ? 5 : Number(values.window);
const pods = smoke ? 10 : Number(values.pods);
const rate = smoke ? 20 : Number(values.rate);
const tokenTtl = smoke ? 4 : Number(values["token-ttl"]);
const leaseTtl = smoke ? 4 : Number(values["lease-ttl"]);
if (
  ![refreshSeconds, windowSeconds, pods, rate, tokenTtl, leaseTtl].every(
    (n) => Number.isInteger(n) && n > 0,
  )
) {
  throw new Error(
    "--refresh, --window, --pods, --rate, --token-ttl and --lease-ttl take positive integers",
  );
}
const DISTINCT = 5;

const failures: string[] = [];
const report = startReport("backend", smoke);
console.log(`bench:backend${smoke ? " (smoke)" : ""}: ${describeLoad()}`);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<Record<string, unknown>> {
  const agentMain = prepareAgentBundle();
  const [vault, pg] = await Promise.all([
    startBenchVault({ tokenTtl: `${tokenTtl}s` }),
    startPostgres(),
  ]);
  const kv = await vault.putSecrets("k", DISTINCT);
  await configureDatabase(vault.bao, pg);
  const root = makeTempDir("dso-bench-backend", "/dev/shm");
  // 10 files from 5 distinct secrets: the agent reads each secret once per refresh.
  const kvEntries: SecretEntry[] = [...kv.keys()].flatMap((path, i) => [
    { file: `k${i}-user`, path, key: "username" },
    { file: `k${i}-password`, path, key: "password" },
  ]);
  const kvExpected = new Map<string, string>(
    [...kv.entries()].flatMap(([, v], i) => [
      [`k${i}-user`, v.username],
      [`k${i}-password`, v.password],
    ]),
  );

  // 1. One pod's lifetime.
  const proxy = await startVaultProxy(vault.bao.address);
  const dirs = podDirs(root, "lifetime");
  const config = agentConfig({
    vault,
    address: proxy.address,
    ...dirs,
    refreshSeconds,
    secrets: [
      ...kvEntries,
      {
        file: "db.url",
        path: "database/creds/bench",
        template: `postgresql://{{username}}:{{password}}@127.0.0.1:${pg.port}/postgres`,
      },
      { file: "db.json", path: "database/creds/bench" },
    ],
  });
  const init = await spawnAgent(agentMain, "init", config, { name: "lifetime-init" }).finished;
  if (init.code !== 0) throw new Error(`lifetime pod: init exited ${String(init.code)}`);
  const initCounts = proxy.counts();
  const sidecarFrom = proxy.now();
  const sidecar = spawnAgent(agentMain, "sidecar", config, {
    name: "lifetime-sidecar",
    env: { DSO_LOG_LEVEL: "warn" },
  });
  const windowStart = performance.now();
  await sleep(windowSeconds * 1000);
  if (sidecar.hasExited()) throw new Error(`sidecar exited: ${sidecar.logs().slice(-800)}`);
  const windowMs = performance.now() - windowStart;
  const sidecarCounts = proxy.counts(sidecarFrom);
  const sidecarEvents = proxy.events.filter((e) => e.at >= sidecarFrom);
  const exit = await sidecar.stop(5_000);
  if (exit.code !== 0) failures.push(`lifetime sidecar: exit ${String(exit.code)} after SIGTERM`);
  const problem = filesProblem(
    dirs.mountPath,
    new Map([
      ...kvExpected,
      ["db.url", readBack(dirs.mountPath, "db.url")],
      ["db.json", readBack(dirs.mountPath, "db.json")],
    ]),
  );
  if (problem !== undefined) failures.push(`lifetime pod: ${problem}`);
  await proxy.close();
  const allEvents = proxy.events;
  const credsIssued = allEvents.filter(
    (e) => e.kind === "read" && e.path.startsWith("database/creds/"),
  ).length;
  const kvReadsInWindow = sidecarEvents.filter(
    (e) => e.kind === "read" && e.path.startsWith("secret/"),
  ).length;
  const logins = allEvents.filter((e) => e.kind === "login").length;
  const pgRoles = Number(await pg.psql(`select count(*) from pg_roles where rolname like 'v-%'`));
  const perHour = (n: number): number => (n * 3_600_000) / windowMs;
  const expectedPerHour = {
    read: (DISTINCT * 3600) / refreshSeconds,
    "token renew": 3600 / ((tokenTtl * 2) / 3),
    "lease renew": 3600 / ((leaseTtl * 2) / 3),
  };
  if (logins !== 1) failures.push(`lifetime pod: ${logins} logins, expected 1`);
  if (credsIssued !== 1)
    failures.push(`lifetime pod: ${credsIssued} database credentials issued, expected 1`);
  if (pgRoles !== 1) failures.push(`lifetime pod: ${pgRoles} roles in PostgreSQL, expected 1`);
  if (sidecarCounts["token renew"] === 0)
    failures.push("lifetime pod: the sidecar never renewed its token");
  if (sidecarCounts["lease renew"] === 0)
    failures.push("lifetime pod: the sidecar never renewed the lease");
  const kinds = [
    "login",
    "read",
    "token lookup",
    "token renew",
    "lease renew",
    "mount lookup",
    "other",
  ] as const;
  const lifetimeRows = kinds.map((k) => {
    const expected =
      k in expectedPerHour ? expectedPerHour[k as keyof typeof expectedPerHour] : undefined;
    return {
      kind: k,
      init: initCounts[k],
      sidecarWindow: sidecarCounts[k],
      perHour: perHour(sidecarCounts[k]),
      expectedPerHour: expected,
    };
  });
  console.log(
    `\nOne pod: 12 files (10 from ${DISTINCT} KV v2 secrets, 2 from one database/creds reference), refresh ${refreshSeconds} s, token TTL ${tokenTtl} s, lease TTL ${leaseTtl} s; sidecar window ${round(windowMs / 1000)} s; ${describeLoad()}`,
  );
  console.log(
    markdownTable(
      [
        "requests",
        "init",
        `sidecar (${round(windowMs / 1000)} s)`,
        "sidecar per hour",
        "expected per hour",
      ],
      lifetimeRows.map((r) => [
        r.kind,
        r.init,
        r.sidecarWindow,
        round(r.perHour),
        r.expectedPerHour === undefined ? "" : round(r.expectedPerHour),
      ]),
    ),
  );
  console.log(
    markdownTable(
      ["per pod lifetime", "goal", "measured", "met"],
      [
        ["logins (init + sidecar)", "1", logins, logins === 1 ? "yes" : "NO"],
        [
          "KV reads per refresh",
          `${DISTINCT} (distinct secrets, not files)`,
          round(kvReadsInWindow / (windowMs / 1000 / refreshSeconds)),
          "",
        ],
        ["database credentials issued", "1", credsIssued, credsIssued === 1 ? "yes" : "NO"],
        ["roles created in PostgreSQL", "1", pgRoles, pgRoles === 1 ? "yes" : "NO"],
      ],
    ),
  );

  // 2. Does the agent wait for Retry-After?
  const retryAfterSeconds = 3;
  const probe = await startVaultProxy(vault.bao.address, {
    ratePerSecond: 1e-9,
    burst: 0,
    retryAfterSeconds,
  });
  const probeDirs = podDirs(root, "retry-after");
  const probeRun = spawnAgent(
    agentMain,
    "init",
    agentConfig({
      vault,
      address: probe.address,
      ...probeDirs,
      refreshSeconds: 60,
      secrets: kvEntries,
    }),
    { name: "retry-after-init" },
  );
  const throttleMs = smoke ? 1500 : 6500;
  await sleep(throttleMs);
  probe.throttle({});
  const probeExit = await probeRun.finished;
  await probe.close();
  const refused = probe.events.filter((e) => e.throttled);
  const gaps = refused.slice(1).map((e, i) => e.at - (refused[i]?.at ?? 0));
  const honoured = gaps.every((g) => g >= retryAfterSeconds * 1000 - 50);
  if (probeExit.code !== 0)
    failures.push(`Retry-After probe: init exited ${String(probeExit.code)}`);
  console.log(
    `\nRetry-After probe: 429 with Retry-After: ${retryAfterSeconds} for ${throttleMs / 1000} s; the agent's logins came ${refused.length} times, ${gaps.length > 0 ? `at gaps of ${gaps.map((g) => round(g / 1000)).join(", ")} s` : "once"}; ${honoured ? "Retry-After honoured" : "Retry-After NOT honoured (its own backoff: 1, 2, 4 s …)"}; init exit ${String(probeExit.code)} after ${round(probeExit.ms / 1000)} s`,
  );

  // 3. Burst.
  const burstProxy = await startVaultProxy(vault.bao.address, {
    ratePerSecond: rate,
    burst: rate,
    retryAfterSeconds: 1,
  });
  const loadBefore = loadAverage();
  const started = performance.now();
  const runs: { run: AgentRun; mountPath: string }[] = [];
  for (let i = 0; i < pods; i++) {
    const d = podDirs(root, `burst-${i}`);
    const run = spawnAgent(
      agentMain,
      "init",
      agentConfig({
        vault,
        address: burstProxy.address,
        ...d,
        refreshSeconds: 60,
        secrets: kvEntries,
      }),
      { name: `burst-${i}`, env: { DSO_LOG_LEVEL: "warn" } },
    );
    runs.push({ run, mountPath: d.mountPath });
  }
  const exits = await Promise.all(runs.map((r) => r.run.finished));
  const completionMs = performance.now() - started;
  const loadAfter = loadAverage();
  await burstProxy.close();
  const burstFailures = exits.filter((e) => e.code !== 0).length;
  const badFiles = runs.filter(
    (r, i) => exits[i]?.code === 0 && filesProblem(r.mountPath, kvExpected) !== undefined,
  ).length;
  const firstFailure = runs.find((_, i) => exits[i]?.code !== 0);
  if (burstFailures > 0) {
    failures.push(
      `burst: ${burstFailures} of ${pods} init containers failed; first: ${firstFailure?.run.logs().slice(-400) ?? ""}`,
    );
  }
  if (badFiles > 0) failures.push(`burst: ${badFiles} pods exited 0 with wrong files`);
  const bc = burstProxy.counts();
  const initTimes = summarize(exits.map((e) => e.ms));
  const minimumRequests = pods * (1 + DISTINCT);
  const throttled = burstProxy.events.filter((e: ProxyEvent) => e.throttled);
  // Vault's own answers (not the proxy's 429s), by kind and status: more logins than pods means
  // some pods logged in twice (e.g. a request that timed out on the agent's side was answered).
  const upstreamStatuses: Record<string, number> = {};
  for (const e of burstProxy.events) {
    if (e.throttled) continue;
    const k = `${e.kind} ${e.status}`;
    upstreamStatuses[k] = (upstreamStatuses[k] ?? 0) + 1;
  }
  const extraLogins = bc.login - pods;
  // Why pods retried, from their warn-level JSON log lines (reasons name paths and statuses, never values).
  const retryReasons: Record<string, number> = {};
  for (const r of runs) {
    for (const line of r.run.logs().split("\n")) {
      if (!line.startsWith("{")) continue;
      try {
        const entry = JSON.parse(line) as { msg?: string; reason?: string };
        if (entry.reason === undefined) continue;
        const key = `${entry.msg ?? ""}: ${entry.reason.replace(/"[^"]*"/g, '"…"').slice(0, 120)}`;
        retryReasons[key] = (retryReasons[key] ?? 0) + 1;
      } catch {
        // not a log line
      }
    }
  }
  console.log(
    `\nBurst: ${pods} init containers started at once, ${DISTINCT} distinct secrets each, proxy limit ${rate} requests/s (burst ${rate}, 429 + Retry-After: 1 above it); load ${loadBefore.join(" ")} → ${loadAfter.join(" ")}`,
  );
  console.log(
    markdownTable(
      [
        "pods",
        "all done s",
        "init p50 s",
        "init p90 s",
        "init max s",
        "failures",
        "requests forwarded",
        "minimum",
        "429 answers",
        "logins refused",
        "reads refused",
      ],
      [
        [
          pods,
          round(completionMs / 1000),
          round(initTimes.p50Ms / 1000),
          round(initTimes.p90Ms / 1000),
          round(initTimes.maxMs / 1000),
          burstFailures,
          bc.login + bc.read + bc["mount lookup"] + bc.other,
          minimumRequests,
          bc.throttled,
          throttled.filter((e) => e.kind === "login").length,
          throttled.filter((e) => e.kind === "read").length,
        ],
      ],
    ),
  );
  console.log(
    `Vault's answers by kind and status: ${Object.entries(upstreamStatuses)
      .map(([k, n]) => `${k}: ${n}`)
      .join(", ")}; logins beyond one per pod: ${extraLogins}`,
  );
  console.log(
    `Why pods retried (warn log lines): ${Object.entries(retryReasons)
      .sort((x, y) => y[1] - x[1])
      .slice(0, 6)
      .map(([k, n]) => `${n}× ${k}`)
      .join("; ")}`,
  );
  return {
    lifetime: {
      refreshSeconds,
      tokenTtlSeconds: tokenTtl,
      leaseTtlSeconds: leaseTtl,
      windowMs,
      rows: lifetimeRows,
      logins,
      credsIssued,
      pgRoles,
      kvReadsInWindow,
    },
    retryAfter: {
      retryAfterSeconds,
      throttleMs,
      refusedAtMs: refused.map((e) => e.at),
      gapsMs: gaps,
      honoured,
      exit: probeExit,
    },
    burst: {
      pods,
      rate,
      completionMs,
      initTimes,
      failures: burstFailures,
      badFiles,
      counts: bc,
      upstreamStatuses,
      extraLogins,
      retryReasons,
      minimumRequests,
      loadBefore,
      loadAfter,
    },
    auth: "approle",
    azure: "not measured: Lowkey Vault is not obtainable on this machine",
  };
}

function readBack(dir: string, file: string): string {
  // Dynamic credentials are whatever Vault issued; the check is that the file exists and is non-empty.
  try {
    return readFileSync(`${dir}/${file}`, "utf8");
  } catch {
    return "\0missing";
  }
}

async function configureDatabase(
  bao: Awaited<ReturnType<typeof startBenchVault>>["bao"],
  pg: Postgres,
): Promise<void> {
  await bao.ensureMount("database", "database");
  await bao.api("POST", "database/config/bench-db", {
    plugin_name: "postgresql-database-plugin",
    connection_url: `postgresql://{{username}}:{{password}}@127.0.0.1:${pg.port}/postgres?sslmode=disable`,
    username: pg.superuser,
    password: pg.password,
    allowed_roles: ["bench"],
  });
  await bao.api("POST", "database/roles/bench", {
    db_name: "bench-db",
    creation_statements: [
      `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`,
    ],
    default_ttl: `${leaseTtl}s`,
    max_ttl: "24h",
  });
}

await runBench("backend", report, failures, main);
