/**
 * The cluster policy the webhook applies, loaded from the file the Helm chart mounts from a
 * ConfigMap and reloaded when it changes, without a restart.
 *
 * At startup a bad policy is fatal (the rollout stops, the old replicas keep serving). Later, a
 * bad edit is rejected with every problem logged and the previous good policy stays in force.
 */
import { readFile } from "node:fs/promises";
import { DEFAULT_POLICY, formatProblems, parsePolicy, type Policy, type Problem } from "@dso/core";
import { watchFiles, type FileWatch } from "./file-watch.js";
import type { Logger } from "./logger.js";
import type { WebhookMetrics } from "./metrics.js";

/** What the review path needs: the policy in force, read synchronously. */
export interface PolicySource {
  current(): Policy;
}

export type PolicyErrorCode = "POLICY_READ_FAILED" | "POLICY_INVALID";

export class PolicyError extends Error {
  override readonly name = "PolicyError";
  constructor(
    readonly code: PolicyErrorCode,
    message: string,
    readonly problems: readonly Problem[] = [],
  ) {
    super(message);
  }
}

async function readPolicyFile(file: string): Promise<{ text: string; policy: Policy }> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "error";
    throw new PolicyError("POLICY_READ_FAILED", `cannot read policy file ${file}: ${code}`);
  }
  const parsed = parsePolicy(text);
  if (!parsed.ok) {
    throw new PolicyError(
      "POLICY_INVALID",
      `policy file ${file} is invalid (${parsed.problems.length} problem${parsed.problems.length === 1 ? "" : "s"}): ${formatProblems(parsed.problems)}`,
      parsed.problems,
    );
  }
  return { text, policy: parsed.policy };
}

export interface PolicyStoreOptions {
  /** Absent: the built-in default policy, nothing to watch. */
  file?: string;
  logger: Logger;
  metrics: WebhookMetrics;
  pollIntervalMs: number;
  debounceMs?: number;
  /** Called after a new policy took effect (not for the initial load). */
  onChange?: (policy: Policy) => void;
}

export class PolicyStore implements PolicySource {
  private policy: Policy;
  private text: string | undefined;
  private watch: FileWatch | undefined;

  private constructor(
    private readonly options: PolicyStoreOptions,
    initial: { text?: string; policy: Policy },
  ) {
    this.policy = initial.policy;
    this.text = initial.text;
  }

  /** Loads the policy; rejects with a PolicyError listing every problem when it is unusable. */
  static async open(options: PolicyStoreOptions): Promise<PolicyStore> {
    const { file, logger } = options;
    if (file === undefined) {
      logger.info("no policy file: using the default policy, every setting by annotation");
      return new PolicyStore(options, { policy: DEFAULT_POLICY });
    }
    const loaded = await readPolicyFile(file);
    const store = new PolicyStore(options, loaded);
    logger.info({ policyFile: file }, "policy loaded");
    store.watch = watchFiles([file], () => store.reload(), {
      pollIntervalMs: options.pollIntervalMs,
      ...(options.debounceMs === undefined ? {} : { debounceMs: options.debounceMs }),
    });
    return store;
  }

  current(): Policy {
    return this.policy;
  }

  /** Re-reads the file; keeps the previous policy when the new one is unusable. */
  async reload(): Promise<void> {
    const { file, logger, metrics } = this.options;
    if (file === undefined) return;
    let loaded: { text: string; policy: Policy };
    try {
      loaded = await readPolicyFile(file);
    } catch (error) {
      const problems = error instanceof PolicyError ? error.problems : [];
      metrics.policyReloads.inc({ result: "failure" });
      logger.error(
        {
          policyFile: file,
          code: error instanceof PolicyError ? error.code : "POLICY_READ_FAILED",
          problems,
        },
        `policy reload rejected, keeping the previous policy: ${error instanceof Error ? error.message : String(error)}`,
      );
      return;
    }
    if (loaded.text === this.text) return;
    this.policy = loaded.policy;
    this.text = loaded.text;
    metrics.policyReloads.inc({ result: "success" });
    logger.info({ policyFile: file }, "policy reloaded");
    this.options.onChange?.(loaded.policy);
  }

  close(): void {
    this.watch?.close();
  }
}
