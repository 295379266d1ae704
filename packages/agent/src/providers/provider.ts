import type { ProviderName, SecretRef } from "@dso/core";

/** A lease on a dynamic secret (Vault database credentials and any engine that returns one). */
export interface Lease {
  id: string;
  /** Seconds the lease lasted when obtained or last renewed. */
  durationSeconds: number;
  renewable: boolean;
  /** Epoch ms when the lease was obtained or last renewed. */
  renewedAt: number;
  /** Duration of the lease when first issued; a renewal shorter than this means the max TTL is near. */
  initialDurationSeconds: number;
}

/** What a provider read for one reference. */
export interface FetchedSecret {
  /** The secret's data object (Vault) or string value (Azure secret, PEM bundle for certificates). */
  value: string | Record<string, unknown>;
  /** Backend version (KV v2 version, Key Vault version id), when the backend has one. */
  version?: string;
  lease?: Lease;
}

/** Provider-specific state handed from the init container to the sidecar. */
export type ProviderState = Record<string, unknown>;

/**
 * One secrets backend. The agent loads only the providers its configuration uses, so a Vault pod
 * never loads the Azure SDK.
 */
export interface Provider {
  readonly name: ProviderName;
  /** Authenticates, or resumes the state handed over by the init container when it is still valid. */
  start(resume?: ProviderState): Promise<{ resumed: boolean; reason?: string }>;
  /** References with the same key are read once per refresh, however many files use them. */
  dedupeKey(ref: SecretRef): string;
  fetch(ref: SecretRef): Promise<FetchedSecret>;
  renewLease(lease: Lease): Promise<Lease>;
  revokeLease(leaseId: string): Promise<void>;
  /** Milliseconds until the provider's own credentials need attention; undefined when never. */
  authRenewalDueMs(now: number): number | undefined;
  /** Renews the provider's credentials; `relogged` means a new identity token replaced the old one. */
  renewAuth(): Promise<{ relogged: boolean }>;
  /** Counts logins; leases obtained under an earlier login died with that login's token. */
  authGeneration(): number;
  /** State for the hand-off, undefined when there is nothing worth handing over. */
  exportState(): ProviderState | undefined;
  /** Stops; revokes the provider's own token when asked. */
  close(revoke: boolean): Promise<void>;
}
