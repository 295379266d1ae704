/**
 * The webhook's process configuration: command-line flags, each with an environment-variable
 * equivalent (the Helm chart sets the variables). A flag wins over its variable.
 *
 * `loadConfig` never exits or prints: it returns the configuration, the help text, or every
 * problem at once so an operator fixes a broken Deployment in one pass.
 */
import { parseArgs } from "node:util";

export type CertMode = "files" | "self-signed";
export type LogLevel = "trace" | "debug" | "info" | "warn" | "error" | "fatal" | "silent";

const LOG_LEVELS: readonly LogLevel[] = [
  "trace",
  "debug",
  "info",
  "warn",
  "error",
  "fatal",
  "silent",
];
const CERT_MODES: readonly CertMode[] = ["files", "self-signed"];

export interface SelfSignedConfig {
  /** Secret (in `namespace`) holding the shared CA and serving certificate. */
  secretName: string;
  /** MutatingWebhookConfiguration whose caBundle is patched. */
  webhookConfigName: string;
  /** Service in front of the webhook; the certificate is issued for `<service>.<namespace>.svc`. */
  serviceName: string;
  namespace: string;
}

export interface WebhookConfig {
  port: number;
  host: string;
  certMode: CertMode;
  /** Set when `certMode` is `files`. */
  tlsCertFile?: string;
  tlsKeyFile?: string;
  /** Set when `certMode` is `self-signed`. */
  selfSigned?: SelfSignedConfig;
  /** Absent: the built-in default policy (every setting by annotation). */
  policyFile?: string;
  logLevel: LogLevel;
  /** Upper bound on a graceful shutdown, in milliseconds. */
  shutdownTimeoutMs: number;
  /** How often watched files (certificate, key, policy) are also polled, in milliseconds. */
  watchPollIntervalMs: number;
}

export type ConfigResult =
  | { kind: "config"; config: WebhookConfig }
  | { kind: "help"; text: string }
  | { kind: "invalid"; problems: string[]; message: string };

interface OptionSpec {
  flag: string;
  env: string;
  description: string;
  default?: string;
}

/** Every option, in the order shown by `--help`. Keys are the parseArgs option names. */
export const OPTIONS = {
  port: {
    flag: "--port",
    env: "DSO_WEBHOOK_PORT",
    description: "HTTPS port to listen on",
    default: "8443",
  },
  host: {
    flag: "--host",
    env: "DSO_WEBHOOK_HOST",
    description: "address to listen on",
    default: "0.0.0.0",
  },
  "cert-mode": {
    flag: "--cert-mode",
    env: "DSO_CERT_MODE",
    description: "where the serving certificate comes from: files | self-signed",
    default: "files",
  },
  "tls-cert": {
    flag: "--tls-cert",
    env: "DSO_TLS_CERT",
    description: "PEM certificate (chain) file; reloaded when it changes (cert-mode files)",
  },
  "tls-key": {
    flag: "--tls-key",
    env: "DSO_TLS_KEY",
    description: "PEM private key file; reloaded when it changes (cert-mode files)",
  },
  "self-signed-secret": {
    flag: "--self-signed-secret",
    env: "DSO_SELF_SIGNED_SECRET",
    description: "Secret that stores the generated CA and certificate (cert-mode self-signed)",
  },
  "webhook-config-name": {
    flag: "--webhook-config-name",
    env: "DSO_WEBHOOK_CONFIG_NAME",
    description: "MutatingWebhookConfiguration whose caBundle is set (cert-mode self-signed)",
  },
  "service-name": {
    flag: "--service-name",
    env: "DSO_SERVICE_NAME",
    description: "Service name the certificate is issued for (cert-mode self-signed)",
  },
  namespace: {
    flag: "--namespace",
    env: "DSO_NAMESPACE",
    description: "namespace of the webhook's Service and Secret (cert-mode self-signed)",
  },
  policy: {
    flag: "--policy",
    env: "DSO_POLICY_FILE",
    description: "InjectionPolicy YAML file; reloaded when it changes (default: built-in policy)",
  },
  "log-level": {
    flag: "--log-level",
    env: "DSO_LOG_LEVEL",
    description: `log level: ${LOG_LEVELS.join(" | ")}`,
    default: "info",
  },
  "shutdown-timeout": {
    flag: "--shutdown-timeout",
    env: "DSO_SHUTDOWN_TIMEOUT",
    description: "seconds to finish in-flight reviews after SIGTERM",
    default: "20",
  },
  "watch-poll-interval": {
    flag: "--watch-poll-interval",
    env: "DSO_WATCH_POLL_INTERVAL",
    description: "seconds between polls of watched files (besides change events)",
    default: "10",
  },
} as const satisfies Record<string, OptionSpec>;

type OptionName = keyof typeof OPTIONS;

export function helpText(): string {
  const lines = [
    "Usage: dso-webhook [options]",
    "",
    "DSO mutating admission webhook: serves POST /mutate, /healthz, /readyz and /metrics over HTTPS.",
    "Every option can also be set by its environment variable; a flag wins.",
    "",
    "Options:",
  ];
  for (const spec of Object.values(OPTIONS) as OptionSpec[]) {
    const dflt = spec.default === undefined ? "" : ` (default ${spec.default})`;
    lines.push(`  ${`${spec.flag} <value>`.padEnd(32)}${spec.description}${dflt}`);
    lines.push(`  ${"".padEnd(32)}env ${spec.env}`);
  }
  lines.push(`  ${"-h, --help".padEnd(32)}show this help`);
  return lines.join("\n") + "\n";
}

function label(name: OptionName): string {
  return `${OPTIONS[name].flag} (${OPTIONS[name].env})`;
}

export function loadConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): ConfigResult {
  const problems: string[] = [];
  const options = Object.fromEntries(
    Object.keys(OPTIONS).map((name) => [name, { type: "string" as const }]),
  ) as Record<OptionName, { type: "string" }>;

  // strict: false so an unknown flag is one problem among others rather than an exception.
  const parsed = parseArgs({
    args: [...argv],
    options: { ...options, help: { type: "boolean", short: "h" } },
    strict: false,
    allowPositionals: true,
    tokens: true,
  });

  for (const token of parsed.tokens) {
    if (token.kind === "positional") {
      problems.push(`unexpected argument "${token.value}"`);
    } else if (token.kind === "option") {
      if (token.name === "help") continue;
      if (!(token.name in OPTIONS)) {
        problems.push(`unknown flag ${token.rawName}`);
      } else if (token.value === undefined) {
        problems.push(`${token.rawName} needs a value`);
      } else if (!token.inlineValue && token.value.startsWith("-")) {
        // `--tls-key --port 1` almost always means a forgotten value, not a key file named "--port".
        problems.push(
          `${token.rawName} needs a value (got "${token.value}"; write ${token.rawName}=${token.value} if you mean it)`,
        );
      }
    }
  }
  if (parsed.values.help) return { kind: "help", text: helpText() };

  const raw = (name: OptionName): string | undefined => {
    const fromFlag = parsed.values[name];
    if (typeof fromFlag === "string") return fromFlag;
    const fromEnv = env[OPTIONS[name].env];
    return fromEnv === undefined || fromEnv === "" ? undefined : fromEnv;
  };
  const withDefault = (name: OptionName): string => {
    const spec: OptionSpec = OPTIONS[name];
    return raw(name) ?? spec.default ?? "";
  };

  const integer = (name: OptionName, min: number, max: number): number => {
    const text = withDefault(name);
    const value = Number(text);
    if (!/^\d+$/.test(text.trim()) || value < min || value > max) {
      problems.push(`${label(name)}: "${text}" is not a whole number from ${min} to ${max}`);
      return min;
    }
    return value;
  };
  const oneOf = <T extends string>(name: OptionName, allowed: readonly T[]): T => {
    const text = withDefault(name);
    if ((allowed as readonly string[]).includes(text)) return text as T;
    problems.push(`${label(name)}: "${text}" is not one of ${allowed.join(", ")}`);
    return allowed[0] as T;
  };
  const required = (name: OptionName, why: string): string => {
    const value = raw(name);
    if (value === undefined) problems.push(`${label(name)} is required ${why}`);
    return value ?? "";
  };

  const port = integer("port", 0, 65535);
  const host = withDefault("host");
  const certMode = oneOf("cert-mode", CERT_MODES);
  const logLevel = oneOf("log-level", LOG_LEVELS);
  const shutdownSeconds = integer("shutdown-timeout", 0, 3600);
  const pollSeconds = integer("watch-poll-interval", 1, 3600);
  const policyFile = raw("policy");

  const config: WebhookConfig = {
    port,
    host,
    certMode,
    logLevel,
    shutdownTimeoutMs: shutdownSeconds * 1000,
    watchPollIntervalMs: pollSeconds * 1000,
    ...(policyFile === undefined ? {} : { policyFile }),
  };

  if (certMode === "files") {
    config.tlsCertFile = required("tls-cert", "with --cert-mode files");
    config.tlsKeyFile = required("tls-key", "with --cert-mode files");
  } else {
    const why = "with --cert-mode self-signed";
    config.selfSigned = {
      secretName: required("self-signed-secret", why),
      webhookConfigName: required("webhook-config-name", why),
      serviceName: required("service-name", why),
      namespace: required("namespace", why),
    };
  }

  if (problems.length > 0) {
    const message =
      `invalid configuration (${problems.length} problem${problems.length === 1 ? "" : "s"}):\n` +
      problems.map((p) => `  - ${p}`).join("\n") +
      "\nrun dso-webhook --help for the options";
    return { kind: "invalid", problems, message };
  }
  return { kind: "config", config };
}
