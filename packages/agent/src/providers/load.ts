import type { TokenCredential } from "@azure/identity";
import type { Logger } from "pino";
import type { AgentConfig, ProviderName } from "@dso/core";
import type { Provider } from "./provider.js";

export interface ProviderOverrides {
  /** Tests: an Azure credential and CA for a local Key Vault API. */
  azure?: { credential?: TokenCredential; ca?: string };
}

/**
 * Loads only the providers the configuration uses. The imports are dynamic so a Vault pod never
 * loads the Azure SDK (and the reverse): start time matters for an init container.
 */
export async function loadProviders(
  config: AgentConfig,
  logger: Logger,
  overrides: ProviderOverrides = {},
): Promise<Map<ProviderName, Provider>> {
  const used = new Set(config.secrets.map((s) => s.ref.provider));
  const out = new Map<ProviderName, Provider>();
  if (used.has("vault") && config.vault !== undefined) {
    const { VaultProvider } = await import("./vault.js");
    out.set("vault", new VaultProvider({ config: config.vault, pod: config.pod, logger }));
  }
  if (used.has("azure") && config.azure !== undefined) {
    const { AzureProvider } = await import("./azure.js");
    out.set(
      "azure",
      new AzureProvider({
        config: config.azure,
        logger,
        ...(overrides.azure?.credential !== undefined
          ? { credential: overrides.azure.credential }
          : {}),
        ...(overrides.azure?.ca !== undefined ? { ca: overrides.azure.ca } : {}),
      }),
    );
  }
  return out;
}
