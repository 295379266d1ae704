#!/usr/bin/env node
import { existsSync } from "node:fs";
import { runCli } from "./cli.js";

const controller = new AbortController();
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => {
    controller.abort();
  });
}

const code = await runCli({
  argv: process.argv.slice(2),
  env: process.env,
  logStream: process.stdout,
  print: (text) => process.stdout.write(text),
  errorLine: (line) => process.stderr.write(`${line}\n`),
  stop: controller.signal,
  ...(existsSync("/dev/termination-log") ? { terminationLogPath: "/dev/termination-log" } : {}),
});
// Keep-alive sockets and SDK timers must not hold a finished agent open.
process.exit(code);
