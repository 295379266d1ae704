/** Shared fixtures for the webhook's tests (excluded from the build). */
import { readFileSync } from "node:fs";
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { KubeConfig } from "@kubernetes/client-node";
import jsonpatch, { type Operation } from "fast-json-patch";
import { Writable } from "node:stream";
import { generate } from "selfsigned";
import { createLogger, type Logger } from "./logger.js";
import type { SecretObject, SelfSignedKubeApi, WebhookConfigurationObject } from "./self-signed.js";
import type { TlsPair } from "./tls.js";

export interface CapturedLogs {
  logger: Logger;
  /** Every line written so far, parsed. */
  lines(): Record<string, unknown>[];
  /** Raw output, for searching. */
  text(): string;
}

export function captureLogs(): CapturedLogs {
  let output = "";
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      output += chunk.toString("utf8");
      callback();
    },
  });
  const logger = createLogger("debug", stream);
  return {
    logger,
    text: () => output,
    lines: () =>
      output
        .split("\n")
        .filter((line) => line !== "")
        .map((line) => JSON.parse(line) as Record<string, unknown>),
  };
}

/** A fresh copy of a JSON fixture from src/testdata. */
export function fixture(name: string): unknown {
  return JSON.parse(readFileSync(new URL(`./testdata/${name}`, import.meta.url), "utf8"));
}

/** A self-signed pair for 127.0.0.1 and localhost. */
export async function localhostPair(commonName = "localhost"): Promise<TlsPair> {
  const pems = await generate([{ name: "commonName", value: commonName }], {
    keyType: "ec",
    curve: "P-256",
    algorithm: "sha256",
    extensions: [
      { name: "basicConstraints", cA: false },
      { name: "keyUsage", digitalSignature: true, keyEncipherment: true },
      { name: "extKeyUsage", serverAuth: true },
      {
        name: "subjectAltName",
        altNames: [
          { type: 2, value: "localhost" },
          { type: 7, ip: "127.0.0.1" },
        ],
      },
    ],
  });
  return { cert: pems.cert, key: pems.private };
}

/** Polls `check` until it returns true or the time runs out. */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 5000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** An in-memory API server for the two objects, with resourceVersion conflicts like the real one. */
export class FakeCluster implements SelfSignedKubeApi {
  secret: SecretObject | undefined;
  config: WebhookConfigurationObject = {
    apiVersion: "admissionregistration.k8s.io/v1",
    kind: "MutatingWebhookConfiguration",
    metadata: { name: "dso-webhook", resourceVersion: "1" },
    webhooks: [
      { name: "pods.dso.io", clientConfig: {} },
      { name: "pods-system.dso.io", clientConfig: { caBundle: "b2xk" } },
    ],
  };
  writes = 0;
  private version = 1;
  /** Runs before a write, to simulate another replica acting first. */
  beforeWrite: (() => void) | undefined;

  private nextVersion(): string {
    this.version += 1;
    return String(this.version);
  }

  readSecret(): Promise<SecretObject | undefined> {
    return Promise.resolve(this.secret === undefined ? undefined : structuredClone(this.secret));
  }
  createSecret(_ns: string, secret: SecretObject): Promise<"created" | "exists"> {
    this.runBeforeWrite();
    if (this.secret !== undefined) return Promise.resolve("exists");
    this.writes += 1;
    this.secret = {
      ...secret,
      metadata: { ...secret.metadata, resourceVersion: this.nextVersion() },
    };
    return Promise.resolve("created");
  }
  replaceSecret(_ns: string, secret: SecretObject): Promise<"replaced" | "conflict"> {
    this.runBeforeWrite();
    if (secret.metadata?.resourceVersion !== this.secret?.metadata?.resourceVersion) {
      return Promise.resolve("conflict");
    }
    this.writes += 1;
    this.secret = {
      ...secret,
      metadata: { ...secret.metadata, resourceVersion: this.nextVersion() },
    };
    return Promise.resolve("replaced");
  }
  readWebhookConfiguration(): Promise<WebhookConfigurationObject> {
    return Promise.resolve(structuredClone(this.config));
  }
  patchWebhookConfiguration(_name: string, patch: Operation[]): Promise<"patched" | "conflict"> {
    this.runBeforeWrite();
    const next = structuredClone(this.config);
    try {
      jsonpatch.applyPatch(next, patch, true, true);
    } catch {
      // A failed `test` operation, as the API server answers with 422.
      return Promise.resolve("conflict");
    }
    this.writes += 1;
    this.config = { ...next, metadata: { ...next.metadata, resourceVersion: this.nextVersion() } };
    return Promise.resolve("patched");
  }
  private runBeforeWrite(): void {
    const hook = this.beforeWrite;
    this.beforeWrite = undefined;
    hook?.();
  }
}

export const serviceAccount = (
  namespace: string,
  name: string,
  annotations: Record<string, string>,
  rv: string,
) => ({
  apiVersion: "v1",
  kind: "ServiceAccount",
  metadata: { namespace, name, annotations, resourceVersion: rv, uid: `${namespace}-${name}` },
});

/** Just enough of the API server for a ServiceAccount list/watch, on 127.0.0.1. */
export class FakeApiServer {
  readonly server: Server;
  listFailures = 0;
  lists = 0;
  private watchers: ServerResponse[] = [];

  constructor(private readonly items: ReturnType<typeof serviceAccount>[]) {
    this.server = createServer((req, res) => {
      const url = new URL(req.url ?? "/", "http://localhost");
      if (url.pathname !== "/api/v1/serviceaccounts") {
        res.writeHead(404).end();
        return;
      }
      if (url.searchParams.get("watch") === "true") {
        res.writeHead(200, { "content-type": "application/json" });
        res.flushHeaders();
        this.watchers.push(res);
        return;
      }
      this.lists += 1;
      if (this.listFailures > 0) {
        this.listFailures -= 1;
        res.writeHead(500, { "content-type": "application/json" });
        res.end(
          JSON.stringify({
            kind: "Status",
            status: "Failure",
            code: 500,
            message: "etcd unavailable",
          }),
        );
        return;
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          apiVersion: "v1",
          kind: "ServiceAccountList",
          metadata: { resourceVersion: "100" },
          items: this.items,
        }),
      );
    });
  }

  async listen(): Promise<KubeConfig> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    const { port } = this.server.address() as AddressInfo;
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: "test", server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
      users: [{ name: "test" }],
      contexts: [{ name: "test", cluster: "test", user: "test" }],
      currentContext: "test",
    });
    return kc;
  }

  event(type: "ADDED" | "MODIFIED" | "DELETED", object: ReturnType<typeof serviceAccount>): void {
    for (const w of this.watchers) w.write(JSON.stringify({ type, object }) + "\n");
  }

  get watching(): boolean {
    return this.watchers.length > 0;
  }

  async close(): Promise<void> {
    for (const w of this.watchers) w.end();
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }
}
