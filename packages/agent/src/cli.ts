import { writeFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { pino, type DestinationStream, type Logger } from "pino";
import { AGENT_CONFIG_ENV } from "@dso/core";
import { loadAgentConfig } from "./config-source.js";
import { AgentError, errorMessage } from "./errors.js";
import { AgentMetrics } from "./metrics.js";
import { loadProviders, type ProviderOverrides } from "./providers/load.js";
import { DEFAULT_INIT_TIMEOUT_SECONDS, runOnce } from "./run-once.js";
import { Sidecar } from "./sidecar.js";
import { DEFAULT_TELEMETRY_PORT, startTelemetry } from "./telemetry.js";

export const INIT_TIMEOUT_ENV = "DSO_INIT_TIMEOUT";
export const LOG_LEVEL_ENV = "DSO_LOG_LEVEL";

export const EXIT_OK = 0;
/** A secret could not be read or written. */
export const EXIT_FAILED = 1;
/** Bad command line or configuration: retrying will not help. */
export const EXIT_USAGE = 2;

export const USAGE = `Usage: dso-agent <init|sidecar|render> [options]

Modes:
  init       read every secret, write the files, hand state to the sidecar, exit
  sidecar    keep the files fresh until SIGTERM/SIGINT
  render     one-shot, outside Kubernetes (Docker Compose, a VM, a laptop)

Options:
  --config <file>          AgentConfig as JSON or YAML (default: $${AGENT_CONFIG_ENV}, JSON)
  --mount-path <dir>       directory for the secret files (overrides mountPath)
  --state-path <dir>       hand-off directory (overrides statePath)
  --timeout <seconds>      init/render: give up after this long (env ${INIT_TIMEOUT_ENV}, default ${DEFAULT_INIT_TIMEOUT_SECONDS})
  --telemetry-port <port>  sidecar: health and metrics port on 127.0.0.1 (overrides telemetryPort, default ${DEFAULT_TELEMETRY_PORT})
  --log-level <level>      trace|debug|info|warn|error (env ${LOG_LEVEL_ENV}, default info)
  -h, --help               show this help
`;

export interface CliContext {
  argv: string[];
  env: NodeJS.ProcessEnv;
  /** Where JSON logs go (stdout in production). */
  logStream: DestinationStream;
  /** Where `--help` goes (stdout in production); defaults to errorLine. */
  print?: (text: string) => void;
  /** Where the final human-readable error line goes (stderr in production). */
  errorLine: (line: string) => void;
  /** Aborted on SIGTERM/SIGINT; the sidecar stops when it fires. */
  stop: AbortSignal;
  /** Kubernetes shows this file's content in `kubectl describe pod` when the container fails. */
  terminationLogPath?: string;
  providerOverrides?: ProviderOverrides;
}

function parseSeconds(value: string, what: string): number {
  const m = /^(\d+(?:\.\d+)?)(s|m)?$/.exec(value.trim());
  if (m === null || m[1] === undefined) {
    throw new AgentError(
      "CONFIG_INVALID",
      `${what} must be a number of seconds (e.g. 60, 90s or 2m), got "${value}"`,
      {
        retryable: false,
      },
    );
  }
  return Number(m[1]) * (m[2] === "m" ? 60 : 1);
}

/** Runs one mode and returns the process exit code. */
export async function runCli(ctx: CliContext): Promise<number> {
  let logger: Logger | undefined;
  try {
    let args;
    try {
      args = parseArgs({
        args: ctx.argv,
        allowPositionals: true,
        strict: true,
        options: {
          config: { type: "string" },
          "mount-path": { type: "string" },
          "state-path": { type: "string" },
          timeout: { type: "string" },
          "telemetry-port": { type: "string" },
          "log-level": { type: "string" },
          help: { type: "boolean", short: "h" },
        },
      });
    } catch (err) {
      throw new AgentError("CONFIG_INVALID", `${errorMessage(err)}\n${USAGE}`, {
        retryable: false,
      });
    }
    const { values, positionals } = args;
    if (values.help === true) {
      (ctx.print ?? ctx.errorLine)(USAGE);
      return EXIT_OK;
    }
    const mode = positionals[0];
    if (positionals.length !== 1 || (mode !== "init" && mode !== "sidecar" && mode !== "render")) {
      throw new AgentError(
        "CONFIG_INVALID",
        `expected one mode: init, sidecar or render\n${USAGE}`,
        {
          retryable: false,
        },
      );
    }
    const level = values["log-level"] ?? ctx.env[LOG_LEVEL_ENV] ?? "info";
    if (!["trace", "debug", "info", "warn", "error", "fatal", "silent"].includes(level)) {
      throw new AgentError(
        "CONFIG_INVALID",
        `--log-level must be one of trace, debug, info, warn, error; got "${level}"`,
        {
          retryable: false,
        },
      );
    }
    logger = pino(
      {
        level,
        base: { component: "dso-agent", mode },
        // Belt and braces: the agent never logs these fields, but a future change must not either.
        redact: {
          paths: ["token", "jwt", "secret_id", "client_token", "*.token", "*.jwt"],
          censor: "[redacted]",
        },
      },
      ctx.logStream,
    );
    let telemetryPort: number | undefined;
    if (values["telemetry-port"] !== undefined) {
      telemetryPort = Number(values["telemetry-port"]);
      if (!Number.isInteger(telemetryPort) || telemetryPort < 1 || telemetryPort > 65535) {
        throw new AgentError(
          "CONFIG_INVALID",
          `--telemetry-port must be a port number, got "${values["telemetry-port"]}"`,
          {
            retryable: false,
          },
        );
      }
    }
    const config = await loadAgentConfig(values.config, ctx.env, {
      ...(values["mount-path"] !== undefined ? { mountPath: values["mount-path"] } : {}),
      ...(values["state-path"] !== undefined ? { statePath: values["state-path"] } : {}),
      ...(telemetryPort !== undefined ? { telemetryPort } : {}),
    });
    const timeoutText = values.timeout ?? ctx.env[INIT_TIMEOUT_ENV];
    const timeoutSeconds =
      timeoutText !== undefined
        ? parseSeconds(timeoutText, values.timeout !== undefined ? "--timeout" : INIT_TIMEOUT_ENV)
        : DEFAULT_INIT_TIMEOUT_SECONDS;
    const providers = await loadProviders(config, logger, ctx.providerOverrides);
    logger.info(
      {
        providers: [...providers.keys()],
        secrets: config.secrets.length,
        mountPath: config.mountPath,
      },
      "starting",
    );

    if (mode === "init" || mode === "render") {
      // SIGTERM during init (pod deleted while starting) must not wait for the deadline.
      const stopped = new Promise<never>((_, reject) => {
        const fail = () => {
          reject(new AgentError("STOPPED", `stopped by a signal before every secret was written`));
        };
        if (ctx.stop.aborted) fail();
        else ctx.stop.addEventListener("abort", fail, { once: true });
      });
      await Promise.race([
        runOnce({ config, providers, logger, timeoutMs: timeoutSeconds * 1000 }),
        stopped,
      ]);
      return EXIT_OK;
    }

    const metrics = new AgentMetrics();
    const sidecar = new Sidecar({ config, providers, logger, metrics });
    const server = await startTelemetry({
      port: config.telemetryPort ?? DEFAULT_TELEMETRY_PORT,
      metrics,
      health: () => sidecar.health(),
      logger,
    });
    sidecar.attachServer(server);
    const stopped = new Promise<void>((resolve) => {
      if (ctx.stop.aborted) resolve();
      else
        ctx.stop.addEventListener(
          "abort",
          () => {
            resolve();
          },
          { once: true },
        );
    });
    await sidecar.start();
    await stopped;
    logger.info("stopping");
    await sidecar.stop();
    return EXIT_OK;
  } catch (err) {
    const message = errorMessage(err);
    const code = err instanceof AgentError ? err.code : "INTERNAL";
    logger?.error({ code, reason: message }, "dso-agent failed");
    ctx.errorLine(`dso-agent: ${message}`);
    if (ctx.terminationLogPath !== undefined) {
      await writeFile(ctx.terminationLogPath, `${message}\n`).catch(() => undefined);
    }
    return err instanceof AgentError &&
      (err.code === "CONFIG_INVALID" || err.code === "CONFIG_UNREADABLE")
      ? EXIT_USAGE
      : EXIT_FAILED;
  }
}
