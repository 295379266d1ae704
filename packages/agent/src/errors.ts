/**
 * Typed agent errors. Each carries a stable `code` callers branch on, and a message written for
 * the person reading `kubectl describe pod`: it names the secret, path, address or identity
 * involved and never a secret value or token.
 */
export type AgentErrorCode =
  | "CONFIG_INVALID"
  | "CONFIG_UNREADABLE"
  | "VAULT_LOGIN_FAILED"
  | "VAULT_FORBIDDEN"
  | "VAULT_NOT_FOUND"
  | "VAULT_UNREACHABLE"
  | "VAULT_THROTTLED"
  | "VAULT_BAD_RESPONSE"
  | "AZURE_AUTH_FAILED"
  | "AZURE_FORBIDDEN"
  | "AZURE_NOT_FOUND"
  | "AZURE_UNREACHABLE"
  | "AZURE_BAD_RESPONSE"
  | "KEY_NOT_FOUND"
  | "TEMPLATE_FAILED"
  | "CREDENTIAL_FILE_UNREADABLE"
  | "WRITE_FAILED"
  | "INIT_DEADLINE"
  | "STOPPED";

export class AgentError extends Error {
  override readonly name = "AgentError";
  readonly code: AgentErrorCode;
  /** Whether retrying can help (a 404 or a bad template will not fix itself within seconds). */
  readonly retryable: boolean;

  constructor(code: AgentErrorCode, message: string, options?: { retryable?: boolean }) {
    super(message);
    this.code = code;
    this.retryable = options?.retryable ?? true;
  }
}

/** The message of anything thrown, for logs. Library errors can carry request config (tokens), so only the message is used. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
