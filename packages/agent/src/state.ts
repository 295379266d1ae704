import { chmod, mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { ProviderName } from "@dso/core";
import type { Lease, ProviderState } from "./providers/provider.js";

export const STATE_FILE = "agent-state.json";
export const STATE_VERSION = 1;

/** What one secret reference looked like when last read; never its value. */
export interface SecretState {
  /** Epoch ms of the last successful read. */
  fetchedAt: number;
  version?: string;
  lease?: Lease;
}

/**
 * The init container's hand-off to the sidecar, on a private in-memory volume no application
 * container mounts. It holds the Vault token (so the sidecar needs no second login) and the leases
 * (so it renews the init container's dynamic credentials instead of creating a second set).
 */
export interface AgentState {
  version: typeof STATE_VERSION;
  writtenAt: number;
  /** Hash of the configuration's secret list: state from a different configuration is not reused. */
  configHash: string;
  providers: Partial<Record<ProviderName, ProviderState>>;
  /** Keyed by the provider's dedupe key. */
  secrets: Record<string, SecretState>;
  /** Content hash per written file. */
  files: Record<string, string>;
}

export async function saveState(dir: string, state: AgentState): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, STATE_FILE);
  const tmp = `${path}.tmp`;
  await writeFile(tmp, JSON.stringify(state), { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, path);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Loads the hand-off; an unusable state is reported with the reason, never thrown. */
export async function loadState(
  dir: string,
  configHash: string,
): Promise<{ ok: true; state: AgentState } | { ok: false; reason: string }> {
  let text: string;
  try {
    text = await readFile(join(dir, STATE_FILE), "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return {
      ok: false,
      reason:
        code === "ENOENT" ? "no state was handed over" : `state unreadable (${code ?? "error"})`,
    };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { ok: false, reason: "state file is not valid JSON" };
  }
  if (!isRecord(parsed) || parsed.version !== STATE_VERSION) {
    return { ok: false, reason: `state file has an unknown version` };
  }
  if (parsed.configHash !== configHash) {
    return { ok: false, reason: "state was written for a different configuration" };
  }
  if (!isRecord(parsed.providers) || !isRecord(parsed.secrets) || !isRecord(parsed.files)) {
    return { ok: false, reason: "state file is missing fields" };
  }
  return { ok: true, state: parsed as unknown as AgentState };
}
