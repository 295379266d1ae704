#!/usr/bin/env node
/**
 * dso-webhook: reads flags and environment, starts the HTTPS webhook, and shuts it down
 * gracefully on SIGTERM (Kubernetes) or SIGINT (a terminal).
 */
import { loadConfig } from "./config.js";
import { createLogger } from "./logger.js";
import { PolicyError } from "./policy-store.js";
import { startServer, type RunningServer } from "./server.js";

async function main(): Promise<number | undefined> {
  const loaded = loadConfig(process.argv.slice(2), process.env);
  if (loaded.kind === "help") {
    process.stdout.write(loaded.text);
    return 0;
  }
  if (loaded.kind === "invalid") {
    process.stderr.write(`dso-webhook: ${loaded.message}\n`);
    return 2;
  }
  const { config } = loaded;
  const logger = createLogger(config.logLevel);

  // Handlers go in before start-up so a SIGTERM during it is not a hard kill.
  let server: RunningServer | undefined;
  let signals = 0;
  const stop = (signal: NodeJS.Signals): void => {
    signals += 1;
    if (signals > 1) {
      logger.warn({ signal }, "second signal: exiting now");
      process.exit(1);
    }
    logger.info({ signal }, "signal received");
    if (server === undefined) {
      // Still starting: nothing is in flight.
      process.exit(0);
    }
    server.shutdown().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: String(error) }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);

  try {
    server = await startServer(config, { logger });
  } catch (error) {
    logger.fatal(
      {
        code: (error as { code?: unknown }).code,
        ...(error instanceof PolicyError ? { problems: error.problems } : {}),
      },
      `cannot start: ${error instanceof Error ? error.message : String(error)}`,
    );
    // Exit outright: a half-started informer or watch must not keep the process alive.
    process.exit(1);
  }
  return undefined;
}

main().then(
  (code) => {
    if (code !== undefined) process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`dso-webhook: ${String(error)}\n`);
    process.exitCode = 1;
  },
);
