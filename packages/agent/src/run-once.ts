import type { Logger } from "pino";
import type { AgentConfig, ProviderName } from "@dso/core";
import { AgentError, errorMessage } from "./errors.js";
import type { Provider } from "./providers/provider.js";
import { backoffDelayMs } from "./scheduler.js";
import { configHash, SecretSet, type Unit } from "./secret-set.js";
import { saveState, type AgentState, STATE_VERSION } from "./state.js";
import { AtomicWriter } from "./writer.js";

export const DEFAULT_INIT_TIMEOUT_SECONDS = 60;

export interface RunOnceOptions {
  config: AgentConfig;
  providers: Map<ProviderName, Provider>;
  logger: Logger;
  /** Give up after this many ms of retrying. */
  timeoutMs: number;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * The `init` and `render` modes: authenticate, read every secret, write every file once, hand the
 * state over. Failures are retried with exponential backoff until the deadline; then the error
 * names each secret that failed and why.
 */
export async function runOnce(options: RunOnceOptions): Promise<{ files: string[] }> {
  const { config, providers, logger } = options;
  const now = options.now ?? Date.now;
  const sleep = options.sleep ?? defaultSleep;
  const deadline = now() + options.timeoutMs;
  const set = new SecretSet(config, providers, logger, undefined, now);
  const started = new Set<ProviderName>();
  let pending: Unit[] = [...set.units.values()];
  let attempt = 0;
  for (;;) {
    attempt += 1;
    const failures: { what: string; err: unknown }[] = [];
    for (const [name, provider] of providers) {
      if (started.has(name)) continue;
      try {
        await provider.start();
        started.add(name);
      } catch (err) {
        failures.push({ what: `${name} login`, err });
      }
    }
    const ready = pending.filter((u) => started.has(u.provider.name));
    const results = await Promise.allSettled(ready.map((u) => set.fetchUnit(u)));
    const failed: Unit[] = pending.filter((u) => !started.has(u.provider.name));
    results.forEach((r, i) => {
      const unit = ready[i];
      if (unit === undefined || r.status === "fulfilled") return;
      failed.push(unit);
      failures.push({ what: SecretSet.describe(unit), err: r.reason });
    });
    pending = failed;
    if (failures.length === 0) break;
    for (const f of failures) {
      logger.warn(
        { secret: f.what, attempt, reason: errorMessage(f.err) },
        "could not read secret",
      );
    }
    const fatal = failures.find((f) => f.err instanceof AgentError && !f.err.retryable);
    const delay = backoffDelayMs(attempt, Math.random);
    if (fatal !== undefined || now() + delay > deadline) {
      const list = failures.map((f) => `${f.what}: ${errorMessage(f.err)}`).join("; ");
      const why =
        fatal !== undefined
          ? ""
          : ` after ${attempt} ${attempt === 1 ? "attempt" : "attempts"} in ${Math.round(options.timeoutMs / 1000)}s`;
      throw new AgentError("INIT_DEADLINE", `could not read every secret${why}: ${list}`, {
        retryable: false,
      });
    }
    await sleep(delay);
  }

  const writer = new AtomicWriter(config.mountPath, config.fileMode, logger);
  const outcome = await writer.write(set.filesRecord());
  if (config.statePath !== undefined) {
    const state: AgentState = {
      version: STATE_VERSION,
      writtenAt: now(),
      configHash: configHash(config),
      providers: {},
      secrets: set.exportSecrets(),
      files: outcome.hashes,
    };
    for (const [name, provider] of providers) {
      const ps = provider.exportState();
      if (ps !== undefined) state.providers[name] = ps;
    }
    await saveState(config.statePath, state);
    logger.info({ statePath: config.statePath }, "handed state over to the sidecar");
  }
  const files = Object.keys(outcome.hashes).sort();
  logger.info({ files, changed: outcome.changed }, "all secrets written");
  return { files };
}
