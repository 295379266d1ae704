import { createHash } from "node:crypto";
import type { Logger } from "pino";
import type { AgentConfig, ProviderName, SecretRef, SecretSpec } from "@dso/core";
import { AgentError, errorMessage } from "./errors.js";
import type { AgentMetrics } from "./metrics.js";
import type { Lease, Provider } from "./providers/provider.js";
import { fileContent, refLabel } from "./render.js";
import { leaseExpiresAt } from "./scheduler.js";
import type { AgentState, SecretState } from "./state.js";
import { contentHash } from "./writer.js";

/** One distinct secret reference: read once per refresh however many files use it. */
export interface Unit {
  key: string;
  ref: SecretRef;
  provider: Provider;
  files: SecretSpec[];
  version?: string;
  lease?: Lease;
  /** Epoch ms of the last successful read or renewal. */
  fetchedAt?: number;
  failures: number;
  lastError?: string;
  /** The next run must read new credentials instead of renewing (renewal failed, new login). */
  needsRefetch: boolean;
  /** The provider's login generation when the lease was obtained. */
  authGeneration?: number;
  /** A pinned version is read once and never again. */
  pinned: boolean;
}

/** Hash of what the configuration asks for; a hand-off from another configuration is not reused. */
export function configHash(config: AgentConfig): string {
  return createHash("sha256")
    .update(JSON.stringify({ secrets: config.secrets, vault: config.vault, azure: config.azure }))
    .digest("hex");
}

/**
 * The agent's model of its secrets: the distinct references, what is known about each (version,
 * lease, failures), and the last good content of every file. Values live only in memory and in the
 * written files.
 */
export class SecretSet {
  readonly units = new Map<string, Unit>();
  /** Last good content per file; a file absent here is not written. */
  readonly contents = new Map<string, string>();

  constructor(
    config: AgentConfig,
    providers: Map<ProviderName, Provider>,
    private readonly logger: Logger,
    private readonly metrics?: AgentMetrics,
    private readonly now: () => number = Date.now,
  ) {
    for (const spec of config.secrets) {
      const provider = providers.get(spec.ref.provider);
      if (provider === undefined) {
        throw new AgentError(
          "CONFIG_INVALID",
          `file ${spec.file} refers to ${spec.ref.provider}, which is not configured`,
          { retryable: false },
        );
      }
      const key = provider.dedupeKey(spec.ref);
      const unit = this.units.get(key);
      if (unit !== undefined) unit.files.push(spec);
      else {
        this.units.set(key, {
          key,
          ref: spec.ref,
          provider,
          files: [spec],
          failures: 0,
          needsRefetch: false,
          pinned: spec.ref.provider === "azure" && spec.ref.version !== undefined,
        });
      }
    }
  }

  /** The unit's files, for messages and logs. */
  static describe(unit: Unit): string {
    const files = unit.files.map((f) => f.file).join(", ");
    return `${refLabel(unit.files[0] ?? { file: "", ref: unit.ref })} (file ${files})`;
  }

  /** Reads one reference and renders every file that uses it. Throws AgentError; contents change only on success. */
  async fetchUnit(unit: Unit): Promise<void> {
    let fetched;
    try {
      fetched = await unit.provider.fetch(unit.ref);
      this.metrics?.fetches.inc({ provider: unit.provider.name, outcome: "success" });
    } catch (err) {
      this.metrics?.fetches.inc({ provider: unit.provider.name, outcome: "error" });
      throw err;
    }
    const rendered = unit.files.map(
      (spec) => [spec.file, fileContent(spec, fetched.value)] as const,
    );
    for (const [file, content] of rendered) this.contents.set(file, content);
    unit.version = fetched.version;
    unit.lease = fetched.lease;
    unit.authGeneration = unit.provider.authGeneration();
    this.succeeded(unit);
  }

  async renewUnitLease(unit: Unit): Promise<void> {
    if (unit.lease === undefined) return;
    try {
      unit.lease = await unit.provider.renewLease(unit.lease);
      this.metrics?.fetches.inc({ provider: unit.provider.name, outcome: "success" });
    } catch (err) {
      this.metrics?.fetches.inc({ provider: unit.provider.name, outcome: "error" });
      throw err;
    }
    this.logger.info(
      { secret: SecretSet.describe(unit), leaseSeconds: unit.lease.durationSeconds },
      "renewed lease",
    );
    this.succeeded(unit);
  }

  private succeeded(unit: Unit): void {
    const now = this.now();
    unit.fetchedAt = now;
    unit.failures = 0;
    unit.lastError = undefined;
    unit.needsRefetch = false;
    for (const spec of unit.files) {
      this.metrics?.lastSuccess.set({ file: spec.file }, now / 1000);
      if (unit.lease !== undefined) {
        this.metrics?.leaseExpiry.set({ file: spec.file }, leaseExpiresAt(unit.lease) / 1000);
      }
    }
  }

  failed(unit: Unit, err: unknown): void {
    unit.failures += 1;
    unit.lastError = errorMessage(err);
  }

  /** Removes the files of a unit whose lease ran out while it could not be read again. */
  removeFiles(unit: Unit): void {
    for (const spec of unit.files) {
      this.contents.delete(spec.file);
      this.metrics?.leaseExpiry.remove({ file: spec.file });
    }
    unit.lease = undefined;
  }

  filesRecord(): Record<string, string> {
    return Object.fromEntries(this.contents);
  }

  /** Why the agent is unhealthy, or undefined when every secret is good or still within its lease. */
  unhealthyReason(): string | undefined {
    const now = this.now();
    const reasons: string[] = [];
    for (const unit of this.units.values()) {
      const withinLease = unit.lease !== undefined && now < leaseExpiresAt(unit.lease);
      if (unit.fetchedAt === undefined && unit.lastError === undefined) {
        reasons.push(`${SecretSet.describe(unit)}: not read yet`);
      } else if (unit.lastError !== undefined && !withinLease) {
        reasons.push(`${SecretSet.describe(unit)}: ${unit.lastError}`);
      }
    }
    return reasons.length > 0 ? reasons.join("; ") : undefined;
  }

  /**
   * Deterministic hash of what the workload sees, for the `rollout` action: the version of each
   * versioned secret, the content hash of other static ones. Leased (per-pod) credentials are left
   * out, or every replica would compute a different hash and the workload would roll once per pod.
   */
  versionsHash(): string {
    const parts: string[] = [];
    for (const unit of [...this.units.values()].sort((a, b) => a.key.localeCompare(b.key))) {
      if (unit.lease !== undefined) continue;
      const files = unit.files.map((f) => contentHash(this.contents.get(f.file) ?? "")).join(",");
      parts.push(`${unit.key}=${unit.version ?? files}`);
    }
    return createHash("sha256").update(parts.join("\n")).digest("hex").slice(0, 32);
  }

  exportSecrets(): Record<string, SecretState> {
    const out: Record<string, SecretState> = {};
    for (const unit of this.units.values()) {
      if (unit.fetchedAt === undefined) continue;
      const s: SecretState = { fetchedAt: unit.fetchedAt };
      if (unit.version !== undefined) s.version = unit.version;
      if (unit.lease !== undefined) s.lease = unit.lease;
      out[unit.key] = s;
    }
    return out;
  }

  /**
   * Continues from the init container's hand-off: versions and leases from the state, contents
   * from the files it wrote. Returns why the hand-off cannot be used, or undefined.
   */
  restore(state: AgentState, written: Record<string, string>): string | undefined {
    for (const unit of this.units.values()) {
      const s = state.secrets[unit.key];
      if (s === undefined) return `state has no record of ${SecretSet.describe(unit)}`;
      for (const spec of unit.files) {
        const content = written[spec.file];
        if (content === undefined) return `file ${spec.file} is missing`;
        if (state.files[spec.file] !== contentHash(content)) {
          return `file ${spec.file} does not match the state`;
        }
      }
      if (s.lease !== undefined && leaseExpiresAt(s.lease) <= this.now()) {
        return `the lease of ${SecretSet.describe(unit)} has expired`;
      }
    }
    for (const unit of this.units.values()) {
      const s = state.secrets[unit.key];
      if (s === undefined) continue;
      unit.fetchedAt = s.fetchedAt;
      unit.version = s.version;
      unit.lease = s.lease;
      // The handed-over leases belong to the token the provider resumes.
      unit.authGeneration = unit.provider.authGeneration();
      for (const spec of unit.files) {
        const content = written[spec.file];
        if (content !== undefined) this.contents.set(spec.file, content);
        this.metrics?.lastSuccess.set({ file: spec.file }, s.fetchedAt / 1000);
        if (s.lease !== undefined) {
          this.metrics?.leaseExpiry.set({ file: spec.file }, leaseExpiresAt(s.lease) / 1000);
        }
      }
    }
    return undefined;
  }

  /** Leases to revoke on shutdown. */
  leases(): { unit: Unit; lease: Lease }[] {
    return [...this.units.values()].flatMap((unit) =>
      unit.lease !== undefined ? [{ unit, lease: unit.lease }] : [],
    );
  }
}
