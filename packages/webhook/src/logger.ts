/**
 * The webhook's structured logger: pino JSON lines on stdout, ISO timestamps, level names.
 *
 * Review logs carry identifiers and decisions only. Redaction is a second line of defence in case a
 * future log call passes an object with a body or a pod spec: those keys are removed, not masked.
 */
import { pino, type DestinationStream, type Logger } from "pino";
import type { LogLevel } from "./config.js";

export type { Logger } from "pino";

const REDACTED_PATHS = [
  "body",
  "*.body",
  "request.object",
  "request.oldObject",
  "object",
  "oldObject",
  "pod.spec",
  "headers.authorization",
  "req.headers.authorization",
];

export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { component: "dso-webhook" },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
    redact: { paths: REDACTED_PATHS, remove: true },
  };
  // Synchronous writes: lines are in order and none is lost when the process exits after SIGTERM.
  return pino(options, destination ?? pino.destination({ dest: 1, sync: true }));
}
