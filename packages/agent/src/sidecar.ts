import type { Server } from "node:http";
import type { Logger } from "pino";
import type { AgentConfig, ProviderName } from "@dso/core";
import { errorMessage } from "./errors.js";
import type { AgentMetrics } from "./metrics.js";
import { runOnChange } from "./on-change.js";
import type { Provider } from "./providers/provider.js";
import {
  backoffDelayMs,
  leaseAction,
  leaseExpiresAt,
  leaseRefreshDelayMs,
  renewalWasCapped,
  Scheduler,
  staticRefreshDelayMs,
} from "./scheduler.js";
import { configHash, SecretSet, type Unit } from "./secret-set.js";
import { loadState, saveState, STATE_VERSION } from "./state.js";
import { AtomicWriter } from "./writer.js";

const COMMIT_KEY = "commit";
/** Coalesces reads that finish together into one swap and one on-change action. */
const COMMIT_DELAY_MS = 200;
const AUTH_PREFIX = "auth:";

export interface SidecarOptions {
  config: AgentConfig;
  providers: Map<ProviderName, Provider>;
  logger: Logger;
  metrics: AgentMetrics;
  now?: () => number;
  random?: () => number;
  /** Extra context for the on-change action (tests). */
  onChangeEnv?: NodeJS.ProcessEnv;
}

/**
 * The `sidecar` mode: continue from the init container's state and keep every file fresh until
 * stopped. Each distinct secret is its own scheduled task; so is each provider's login.
 */
export class Sidecar {
  readonly set: SecretSet;
  private readonly scheduler: Scheduler;
  private readonly writer: AtomicWriter;
  private readonly now: () => number;
  private readonly random: () => number;
  private server: Server | undefined;
  /** Files on disk reflect what was read (resumed state, or a commit since starting fresh). */
  private written = false;
  private readonly starting = new Map<ProviderName, Promise<void>>();

  constructor(private readonly options: SidecarOptions) {
    this.now = options.now ?? Date.now;
    this.random = options.random ?? Math.random;
    this.set = new SecretSet(
      options.config,
      options.providers,
      options.logger,
      options.metrics,
      this.now,
    );
    this.writer = new AtomicWriter(
      options.config.mountPath,
      options.config.fileMode,
      options.logger,
    );
    this.scheduler = new Scheduler(
      (key) => this.run(key),
      (key, err) => {
        options.logger.error({ task: key, reason: errorMessage(err) }, "scheduled task failed");
      },
    );
  }

  attachServer(server: Server): void {
    this.server = server;
  }

  health(): string | undefined {
    return (
      this.set.unhealthyReason() ?? (this.written ? undefined : "secret files not written yet")
    );
  }

  /** Resumes or starts fresh, then schedules every task. Never throws for backend failures: they are retried. */
  async start(): Promise<void> {
    const { config, providers, logger } = this.options;
    const hash = configHash(config);
    let resumed = false;
    let reason = "no statePath configured";
    if (config.statePath !== undefined) {
      const loaded = await loadState(config.statePath, hash);
      if (loaded.ok) {
        const written = await this.writer.readCurrent();
        const problem = this.set.restore(loaded.state, written);
        reason = problem ?? "";
        resumed = problem === undefined;
        for (const [name, provider] of providers) {
          if (!resumed) break;
          try {
            const r = await provider.start(loaded.state.providers[name]);
            this.starting.set(name, Promise.resolve());
            if (!r.resumed && name === "vault") {
              // A new token: the leases belonged to the old one and die with it.
              resumed = false;
              reason = r.reason ?? "the Vault token could not be reused";
            }
          } catch (err) {
            resumed = false;
            reason = errorMessage(err);
          }
        }
      } else {
        reason = loaded.reason;
      }
    }
    if (resumed) {
      logger.info("continuing from the init container's state: same token, same leases");
      for (const unit of this.set.units.values()) {
        const delay = this.nextDelay(unit);
        // A pinned version read by the init container is never read again.
        if (delay !== undefined) this.scheduler.schedule(unit.key, delay);
      }
      // The init container's state is current; keep the hashes it wrote.
      await this.writer.currentHashes();
      this.written = true;
    } else {
      logger.info({ reason }, "starting fresh: logging in and reading every secret");
      // Files already on disk (from the init container) stay as the last good content until
      // their secret is read again, so a failing read does not remove them.
      for (const unit of this.set.units.values()) {
        // Whatever was restored is not trusted: every secret is read again.
        unit.lease = undefined;
        unit.fetchedAt = undefined;
        unit.version = undefined;
      }
      const written = await this.writer.readCurrent();
      for (const spec of config.secrets) {
        const content = written[spec.file];
        if (content !== undefined && !this.set.contents.has(spec.file)) {
          this.set.contents.set(spec.file, content);
        }
      }
      for (const unit of this.set.units.values()) this.scheduler.schedule(unit.key, 0);
    }
    for (const [name, provider] of providers) {
      const due = provider.authRenewalDueMs(this.now());
      // Providers not yet logged in log in on their first read; renewals start after that.
      this.scheduler.schedule(`${AUTH_PREFIX}${name}`, due ?? 5_000);
    }
  }

  private nextDelay(unit: Unit): number | undefined {
    const now = this.now();
    if (unit.lease !== undefined) return leaseRefreshDelayMs(unit.lease, now);
    if (unit.pinned && unit.fetchedAt !== undefined) return undefined;
    const since = unit.fetchedAt !== undefined ? now - unit.fetchedAt : 0;
    return Math.max(
      0,
      staticRefreshDelayMs(this.options.config.refreshSeconds, this.random) - since,
    );
  }

  private async run(key: string): Promise<number | undefined> {
    if (key === COMMIT_KEY) {
      await this.commit();
      return undefined;
    }
    if (key.startsWith(AUTH_PREFIX))
      return this.runAuth(key.slice(AUTH_PREFIX.length) as ProviderName);
    const unit = this.set.units.get(key);
    return unit === undefined ? undefined : this.runUnit(unit);
  }

  private async runAuth(name: ProviderName): Promise<number | undefined> {
    const provider = this.options.providers.get(name);
    if (provider === undefined) return undefined;
    const due = provider.authRenewalDueMs(this.now());
    if (due === undefined) return 5_000;
    if (due > 0) return due;
    try {
      const { relogged } = await provider.renewAuth();
      if (relogged) this.refetchOrphanedLeases(provider);
      this.requestCommit();
    } catch (err) {
      this.options.logger.error(
        { provider: name, reason: errorMessage(err) },
        "could not renew credentials",
      );
      return backoffDelayMs(1, this.random);
    }
    return provider.authRenewalDueMs(this.now()) ?? 60_000;
  }

  private async runUnit(unit: Unit): Promise<number | undefined> {
    const { logger } = this.options;
    try {
      await this.ensureStarted(unit.provider);
      if (unit.lease !== undefined && !unit.needsRefetch && leaseAction(unit.lease) === "renew") {
        await this.set.renewUnitLease(unit);
        // Vault caps a renewal at the lease's max TTL, so a short answer means these credentials
        // end soon. Read new ones now, while the old ones still have about a third of a lease left
        // for the app to switch over; waiting for the next two-thirds point could leave seconds.
        if (renewalWasCapped(unit.lease)) {
          await this.set.fetchUnit(unit);
          logger.info(
            { secret: SecretSet.describe(unit), version: unit.version },
            "lease is near its max TTL; read new credentials",
          );
        }
      } else {
        await this.set.fetchUnit(unit);
        logger.info({ secret: SecretSet.describe(unit), version: unit.version }, "read secret");
      }
      this.requestCommit();
      // A read may have logged in again (403 on a revoked token): other leases died with the old token.
      this.refetchOrphanedLeases(unit.provider);
      return this.nextDelay(unit);
    } catch (err) {
      this.set.failed(unit, err);
      const now = this.now();
      // A failed renewal usually means the lease is gone: read new credentials next time.
      if (unit.lease !== undefined) unit.needsRefetch = true;
      logger.warn(
        { secret: SecretSet.describe(unit), failures: unit.failures, reason: errorMessage(err) },
        "refresh failed; keeping the last good files",
      );
      if (unit.lease !== undefined && now >= leaseExpiresAt(unit.lease)) {
        logger.error(
          { secret: SecretSet.describe(unit) },
          "lease expired and the secret could not be read again; removing its files",
        );
        this.set.removeFiles(unit);
        this.requestCommit();
      }
      const backoff = backoffDelayMs(unit.failures, this.random);
      if (unit.lease !== undefined) {
        // Retry before the lease runs out, not after a long backoff.
        return Math.max(1_000, Math.min(backoff, leaseExpiresAt(unit.lease) - now));
      }
      return backoff;
    }
  }

  /** Leases are children of the token that created them; after a new login, read new credentials. */
  private refetchOrphanedLeases(provider: Provider): void {
    const generation = provider.authGeneration();
    for (const unit of this.set.units.values()) {
      if (
        unit.provider === provider &&
        unit.lease !== undefined &&
        !unit.needsRefetch &&
        unit.authGeneration !== generation
      ) {
        unit.needsRefetch = true;
        this.scheduler.schedule(unit.key, 0);
      }
    }
  }

  /** Logs a provider in once, however many reads need it at the same time. */
  private async ensureStarted(provider: Provider): Promise<void> {
    let p = this.starting.get(provider.name);
    if (p === undefined) {
      p = provider.start().then(() => undefined);
      this.starting.set(provider.name, p);
      p.catch(() => this.starting.delete(provider.name));
    }
    await p;
  }

  private requestCommit(): void {
    if (!this.scheduler.pending().includes(COMMIT_KEY)) {
      this.scheduler.schedule(COMMIT_KEY, COMMIT_DELAY_MS);
    }
  }

  /** Swaps the files in when something changed, saves the hand-off state, runs on-change. */
  private async commit(): Promise<void> {
    const { config, logger, metrics } = this.options;
    const outcome = await this.writer.write(this.set.filesRecord());
    this.written = true;
    if (config.statePath !== undefined) {
      const providers: Partial<Record<ProviderName, Record<string, unknown>>> = {};
      for (const [name, provider] of this.options.providers) {
        const s = provider.exportState();
        if (s !== undefined) providers[name] = s;
      }
      await saveState(config.statePath, {
        version: STATE_VERSION,
        writtenAt: this.now(),
        configHash: configHash(config),
        providers,
        secrets: this.set.exportSecrets(),
        files: outcome.hashes,
      });
    }
    if (!outcome.changed) return;
    metrics.writes.inc();
    if (config.onChange !== undefined) {
      await runOnChange(config.onChange, {
        config,
        logger,
        versionsHash: this.set.versionsHash(),
        files: Object.keys(outcome.hashes).sort(),
        ...(this.options.onChangeEnv !== undefined ? { env: this.options.onChangeEnv } : {}),
      });
    }
  }

  /** Stops promptly: no new reads, revoke leases and token when configured, close the server. */
  async stop(): Promise<void> {
    const { config, providers, logger } = this.options;
    this.scheduler.stop();
    await this.scheduler.idle();
    const revoke = config.vault?.revokeOnShutdown === true;
    if (revoke) {
      for (const { unit, lease } of this.set.leases()) {
        try {
          await unit.provider.revokeLease(lease.id);
          logger.info({ secret: SecretSet.describe(unit) }, "revoked lease");
        } catch (err) {
          logger.warn(
            { secret: SecretSet.describe(unit), reason: errorMessage(err) },
            "could not revoke lease",
          );
        }
      }
    }
    for (const provider of providers.values()) await provider.close(revoke);
    if (this.server !== undefined) {
      const server = this.server;
      server.closeAllConnections();
      await new Promise<void>((r) =>
        server.close(() => {
          r();
        }),
      );
    }
    logger.info("stopped");
  }
}
