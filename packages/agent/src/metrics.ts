import { Counter, Gauge, Registry } from "prom-client";

/** Prometheus metrics of one agent. Labels name files and providers, never values. */
export class AgentMetrics {
  readonly registry = new Registry();
  readonly fetches = new Counter({
    name: "dso_agent_fetches_total",
    help: "Secret reads and lease renewals by provider and outcome.",
    labelNames: ["provider", "outcome"] as const,
    registers: [this.registry],
  });
  readonly lastSuccess = new Gauge({
    name: "dso_agent_last_success_timestamp_seconds",
    help: "Unix time of the last successful read or renewal behind each secret file.",
    labelNames: ["file"] as const,
    registers: [this.registry],
  });
  readonly leaseExpiry = new Gauge({
    name: "dso_agent_lease_expiry_timestamp_seconds",
    help: "Unix time when the lease behind each secret file runs out.",
    labelNames: ["file"] as const,
    registers: [this.registry],
  });
  readonly writes = new Counter({
    name: "dso_agent_file_writes_total",
    help: "Atomic swaps of the secret files (only when some content changed).",
    registers: [this.registry],
  });
}
