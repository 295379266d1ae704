import {
  type TokenCredential,
  DefaultAzureCredential,
  ManagedIdentityCredential,
  WorkloadIdentityCredential,
} from "@azure/identity";
import { SecretClient, type SecretClientOptions } from "@azure/keyvault-secrets";
import type { Logger } from "pino";
import type { AzureConfig, AzureSecretRef, SecretRef } from "@dso/core";
import { AgentError } from "../errors.js";
import { certificatePem } from "./certificate-pem.js";
import type { FetchedSecret, Lease, Provider, ProviderState } from "./provider.js";

export interface AzureProviderOptions {
  config: AzureConfig;
  logger: Logger;
  /** Replaces the configured identity; used by tests that run a local Key Vault API. */
  credential?: TokenCredential;
  /** Extra CA certificates to trust (tests with a self-signed local server). */
  ca?: string;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Builds the configured credential. No client secrets: only federated, managed and developer identities. */
export function azureCredential(config: AzureConfig): TokenCredential {
  switch (config.auth) {
    case "workload-identity":
      return new WorkloadIdentityCredential({
        ...(config.tenantId !== undefined ? { tenantId: config.tenantId } : {}),
        ...(config.clientId !== undefined ? { clientId: config.clientId } : {}),
        ...(config.tokenFile !== undefined ? { tokenFilePath: config.tokenFile } : {}),
        ...(config.authorityHost !== undefined ? { authorityHost: config.authorityHost } : {}),
        ...(config.disableInstanceDiscovery !== undefined
          ? { disableInstanceDiscovery: config.disableInstanceDiscovery }
          : {}),
      });
    case "managed-identity":
      return config.clientId !== undefined
        ? new ManagedIdentityCredential({ clientId: config.clientId })
        : new ManagedIdentityCredential();
    case "default":
      return new DefaultAzureCredential({
        ...(config.clientId !== undefined ? { managedIdentityClientId: config.clientId } : {}),
        ...(config.tenantId !== undefined ? { tenantId: config.tenantId } : {}),
      });
  }
}

export class AzureProvider implements Provider {
  readonly name = "azure" as const;
  private readonly config: AzureConfig;
  private readonly logger: Logger;
  private readonly credential: TokenCredential;
  private readonly ca: string | undefined;
  private readonly clients = new Map<string, SecretClient>();

  constructor(options: AzureProviderOptions) {
    this.config = options.config;
    this.logger = options.logger.child({ provider: "azure" });
    this.credential = options.credential ?? azureCredential(options.config);
    this.ca = options.ca;
  }

  start(): Promise<{ resumed: boolean; reason?: string }> {
    // Entra tokens are short-lived and cached by the SDK; nothing is worth handing over.
    return Promise.resolve({ resumed: false, reason: "Azure identities need no hand-off" });
  }

  private identity(): string {
    const c = this.config;
    const id = c.clientId !== undefined ? ` (client id ${c.clientId})` : "";
    return `${c.auth}${id}`;
  }

  private vaultUrl(ref: AzureSecretRef): string {
    const url = ref.vaultUrl ?? this.config.vaultUrl;
    if (url === undefined) {
      throw new AgentError("CONFIG_INVALID", `no vault URL for Azure secret "${ref.name}"`, {
        retryable: false,
      });
    }
    return url.replace(/\/+$/, "");
  }

  private client(vaultUrl: string): SecretClient {
    let c = this.clients.get(vaultUrl);
    if (c === undefined) {
      const options: SecretClientOptions = {};
      if (this.config.serviceVersion !== undefined) {
        options.serviceVersion = this.config.serviceVersion as NonNullable<
          SecretClientOptions["serviceVersion"]
        >;
      }
      if (this.config.disableChallengeResourceVerification !== undefined) {
        options.disableChallengeResourceVerification =
          this.config.disableChallengeResourceVerification;
      }
      if (this.ca !== undefined) options.tlsOptions = { ca: this.ca };
      c = new SecretClient(vaultUrl, this.credential, options);
      this.clients.set(vaultUrl, c);
    }
    return c;
  }

  dedupeKey(ref: SecretRef): string {
    if (ref.provider !== "azure") return `other:${JSON.stringify(ref)}`;
    return `azure:${this.vaultUrl(ref)}|${ref.kind}|${ref.name}|${ref.version ?? ""}`;
  }

  async fetch(ref: SecretRef): Promise<FetchedSecret> {
    if (ref.provider !== "azure") throw new Error("AzureProvider was given a non-Azure reference");
    const vaultUrl = this.vaultUrl(ref);
    const what = `${ref.kind} "${ref.name}"${ref.version !== undefined ? ` version ${ref.version}` : ""} in ${vaultUrl}`;
    let secret;
    try {
      secret = await this.client(vaultUrl).getSecret(
        ref.name,
        ref.version !== undefined ? { version: ref.version } : {},
      );
    } catch (err) {
      throw this.fetchError(what, err);
    }
    if (secret.value === undefined) {
      throw new AgentError("AZURE_BAD_RESPONSE", `Key Vault returned no value for ${what}`);
    }
    const out: FetchedSecret = {
      value:
        ref.kind === "certificate"
          ? certificatePem(secret.value, secret.properties.contentType, what)
          : secret.value,
    };
    if (secret.properties.version !== undefined) out.version = secret.properties.version;
    return out;
  }

  private fetchError(what: string, err: unknown): AgentError {
    const status = isRecord(err) && typeof err.statusCode === "number" ? err.statusCode : undefined;
    const name = err instanceof Error ? err.name : "";
    if (status === 403) {
      return new AgentError(
        "AZURE_FORBIDDEN",
        `Key Vault denied reading ${what} (HTTP 403) for identity ${this.identity()}; grant it "Key Vault Secrets User" (RBAC) or a get-secret access policy`,
      );
    }
    if (status === 404) {
      return new AgentError("AZURE_NOT_FOUND", `Key Vault has no ${what} (HTTP 404)`);
    }
    if (status === 401 || name === "AuthenticationError" || name === "CredentialUnavailableError") {
      const detail = err instanceof Error ? err.message.split("\n")[0]?.slice(0, 300) : "";
      return new AgentError(
        "AZURE_AUTH_FAILED",
        `could not authenticate to Key Vault as ${this.identity()} to read ${what}: ${detail ?? ""}`,
      );
    }
    if (status !== undefined) {
      return new AgentError(
        "AZURE_BAD_RESPONSE",
        `Key Vault answered HTTP ${status} reading ${what}`,
      );
    }
    const detail = err instanceof Error ? err.message.slice(0, 200) : String(err);
    return new AgentError(
      "AZURE_UNREACHABLE",
      `Key Vault is unreachable reading ${what}: ${detail}`,
    );
  }

  renewLease(lease: Lease): Promise<Lease> {
    return Promise.resolve(lease);
  }

  revokeLease(): Promise<void> {
    return Promise.resolve();
  }

  authGeneration(): number {
    return 0;
  }

  authRenewalDueMs(): number | undefined {
    return undefined;
  }

  renewAuth(): Promise<{ relogged: boolean }> {
    return Promise.resolve({ relogged: false });
  }

  exportState(): ProviderState | undefined {
    return undefined;
  }

  close(): Promise<void> {
    this.clients.clear();
    this.logger.debug("closed");
    return Promise.resolve();
  }
}
