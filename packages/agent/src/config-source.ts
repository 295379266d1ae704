import { readFile } from "node:fs/promises";
import { parse as parseYaml } from "yaml";
import { AGENT_CONFIG_ENV, formatProblems, parseAgentConfig, type AgentConfig } from "@dso/core";
import { AgentError } from "./errors.js";

export interface ConfigOverrides {
  mountPath?: string;
  statePath?: string;
  telemetryPort?: number;
}

/**
 * Reads the AgentConfig: from `--config <file>` (JSON or YAML) when given, else from the
 * `DSO_AGENT_CONFIG` environment variable (JSON, set by the webhook). Flags override fields.
 */
export async function loadAgentConfig(
  file: string | undefined,
  env: NodeJS.ProcessEnv,
  overrides: ConfigOverrides,
): Promise<AgentConfig> {
  let raw: unknown;
  let source: string;
  if (file !== undefined) {
    source = file;
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (err) {
      throw new AgentError(
        "CONFIG_UNREADABLE",
        `cannot read the configuration file ${file}: ${(err as NodeJS.ErrnoException).code ?? "error"}`,
        { retryable: false },
      );
    }
    try {
      // YAML is a superset of JSON, so one parser reads both.
      raw = parseYaml(text);
    } catch (err) {
      throw new AgentError(
        "CONFIG_INVALID",
        `the configuration file ${file} is not valid YAML or JSON: ${(err as Error).message.split("\n")[0] ?? ""}`,
        { retryable: false },
      );
    }
  } else {
    source = `$${AGENT_CONFIG_ENV}`;
    const text = env[AGENT_CONFIG_ENV];
    if (text === undefined || text.trim() === "") {
      throw new AgentError(
        "CONFIG_UNREADABLE",
        `no configuration: set ${AGENT_CONFIG_ENV} (JSON) or pass --config <file>`,
        { retryable: false },
      );
    }
    try {
      raw = JSON.parse(text);
    } catch (err) {
      throw new AgentError(
        "CONFIG_INVALID",
        `${AGENT_CONFIG_ENV} is not valid JSON: ${(err as Error).message}`,
        { retryable: false },
      );
    }
  }
  if (typeof raw === "object" && raw !== null && !Array.isArray(raw)) {
    const o = { ...(raw as Record<string, unknown>) };
    if (overrides.mountPath !== undefined) o.mountPath = overrides.mountPath;
    if (overrides.statePath !== undefined) o.statePath = overrides.statePath;
    if (overrides.telemetryPort !== undefined) o.telemetryPort = overrides.telemetryPort;
    raw = o;
  }
  const parsed = parseAgentConfig(raw);
  if (!parsed.ok) {
    throw new AgentError(
      "CONFIG_INVALID",
      `invalid configuration in ${source}: ${formatProblems(parsed.problems)}`,
      { retryable: false },
    );
  }
  return parsed.config;
}
