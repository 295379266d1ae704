import { describe, expect, it } from "vitest";
import { loadConfig } from "./config.js";

describe("loadConfig", () => {
  it("applies defaults and reads flags", () => {
    const result = loadConfig(["--tls-cert", "/tls/tls.crt", "--tls-key=/tls/tls.key"], {});
    expect(result).toEqual({
      kind: "config",
      config: {
        port: 8443,
        host: "0.0.0.0",
        certMode: "files",
        tlsCertFile: "/tls/tls.crt",
        tlsKeyFile: "/tls/tls.key",
        logLevel: "info",
        shutdownTimeoutMs: 20_000,
        watchPollIntervalMs: 10_000,
      },
    });
  });

  it("reads environment variables, and a flag wins over its variable", () => {
    const result = loadConfig(["--port", "9443"], {
      DSO_WEBHOOK_PORT: "7000",
      DSO_WEBHOOK_HOST: "127.0.0.1",
      DSO_TLS_CERT: "/c",
      DSO_TLS_KEY: "/k",
      DSO_POLICY_FILE: "/etc/dso/policy.yaml",
      DSO_LOG_LEVEL: "debug",
      DSO_SHUTDOWN_TIMEOUT: "5",
      DSO_WATCH_POLL_INTERVAL: "2",
    });
    expect(result.kind).toBe("config");
    if (result.kind !== "config") return;
    expect(result.config).toMatchObject({
      port: 9443,
      host: "127.0.0.1",
      tlsCertFile: "/c",
      tlsKeyFile: "/k",
      policyFile: "/etc/dso/policy.yaml",
      logLevel: "debug",
      shutdownTimeoutMs: 5000,
      watchPollIntervalMs: 2000,
    });
  });

  it("reads the self-signed settings", () => {
    const result = loadConfig(["--cert-mode", "self-signed", "--namespace", "dso-system"], {
      DSO_SELF_SIGNED_SECRET: "dso-webhook-tls",
      DSO_WEBHOOK_CONFIG_NAME: "dso-webhook",
      DSO_SERVICE_NAME: "dso-webhook",
    });
    expect(result).toMatchObject({
      kind: "config",
      config: {
        certMode: "self-signed",
        selfSigned: {
          secretName: "dso-webhook-tls",
          webhookConfigName: "dso-webhook",
          serviceName: "dso-webhook",
          namespace: "dso-system",
        },
      },
    });
  });

  it("lists every problem in one message, naming flag and variable", () => {
    const result = loadConfig(
      ["--port", "99999", "--bogus", "--log-level", "loud", "stray", "--tls-key"],
      { DSO_CERT_MODE: "files", DSO_SHUTDOWN_TIMEOUT: "soon" },
    );
    expect(result.kind).toBe("invalid");
    if (result.kind !== "invalid") return;
    expect(result.problems).toEqual([
      "unknown flag --bogus",
      'unexpected argument "stray"',
      "--tls-key needs a value",
      '--port (DSO_WEBHOOK_PORT): "99999" is not a whole number from 0 to 65535',
      '--log-level (DSO_LOG_LEVEL): "loud" is not one of trace, debug, info, warn, error, fatal, silent',
      '--shutdown-timeout (DSO_SHUTDOWN_TIMEOUT): "soon" is not a whole number from 0 to 3600',
      "--tls-cert (DSO_TLS_CERT) is required with --cert-mode files",
      "--tls-key (DSO_TLS_KEY) is required with --cert-mode files",
    ]);
    for (const problem of result.problems) expect(result.message).toContain(problem);
  });

  it("lists every missing self-signed setting", () => {
    const result = loadConfig(["--cert-mode", "self-signed"], {});
    expect(result.kind === "invalid" ? result.problems : []).toEqual([
      "--self-signed-secret (DSO_SELF_SIGNED_SECRET) is required with --cert-mode self-signed",
      "--webhook-config-name (DSO_WEBHOOK_CONFIG_NAME) is required with --cert-mode self-signed",
      "--service-name (DSO_SERVICE_NAME) is required with --cert-mode self-signed",
      "--namespace (DSO_NAMESPACE) is required with --cert-mode self-signed",
    ]);
  });

  it("rejects an unknown cert mode", () => {
    const result = loadConfig(["--cert-mode", "acme"], { DSO_TLS_CERT: "/c", DSO_TLS_KEY: "/k" });
    expect(result.kind === "invalid" ? result.problems : []).toEqual([
      '--cert-mode (DSO_CERT_MODE): "acme" is not one of files, self-signed',
    ]);
  });

  it("prints help naming every flag and variable", () => {
    const result = loadConfig(["--help"], {});
    expect(result.kind).toBe("help");
    if (result.kind !== "help") return;
    for (const name of [
      "--port",
      "DSO_WEBHOOK_PORT",
      "--tls-cert",
      "DSO_TLS_KEY",
      "DSO_POLICY_FILE",
    ]) {
      expect(result.text).toContain(name);
    }
  });
});

describe("loadConfig flag values", () => {
  it("treats a flag-looking value as a forgotten value", () => {
    const result = loadConfig(["--tls-cert", "--tls-key", "/k"], {});
    expect(result.kind === "invalid" ? result.problems[0] : "").toBe(
      '--tls-cert needs a value (got "--tls-key"; write --tls-cert=--tls-key if you mean it)',
    );
  });
});
