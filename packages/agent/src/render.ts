import { renderTemplate, type SecretSpec } from "@dso/core";
import { AgentError } from "./errors.js";

/** Where a reference points, for messages: a Vault path or a Key Vault name. */
export function refLabel(spec: SecretSpec): string {
  const r = spec.ref;
  return r.provider === "vault"
    ? `vault:${r.path}`
    : `azure:${r.vaultUrl ?? ""}/${r.kind}s/${r.name}`;
}

/**
 * The bytes of one file from what its reference fetched: a Vault key's string, the whole data
 * object as JSON, an Azure secret's string, or the file's template rendered with any of those.
 */
export function fileContent(spec: SecretSpec, fetched: string | Record<string, unknown>): string {
  let selected: string | Record<string, unknown> = fetched;
  if (spec.ref.provider === "vault" && spec.ref.key !== undefined) {
    const key = spec.ref.key;
    if (typeof fetched === "string" || !Object.hasOwn(fetched, key)) {
      const keys = typeof fetched === "string" ? "none" : Object.keys(fetched).sort().join(", ");
      throw new AgentError(
        "KEY_NOT_FOUND",
        `secret "${spec.ref.path}" has no key "${key}" for file ${spec.file} (it has: ${keys})`,
        { retryable: false },
      );
    }
    const v = fetched[key];
    selected = typeof v === "string" ? v : JSON.stringify(v);
  }
  if (spec.template !== undefined) {
    const rendered = renderTemplate(spec.template, selected);
    if (!rendered.ok) {
      throw new AgentError(
        "TEMPLATE_FAILED",
        `template for file ${spec.file} (${refLabel(spec)}): ${rendered.message}`,
        { retryable: false },
      );
    }
    return rendered.text;
  }
  return typeof selected === "string" ? selected : `${JSON.stringify(selected, null, 2)}\n`;
}
