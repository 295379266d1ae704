export {
  runCli,
  USAGE,
  EXIT_OK,
  EXIT_FAILED,
  EXIT_USAGE,
  INIT_TIMEOUT_ENV,
  LOG_LEVEL_ENV,
} from "./cli.js";
export { loadAgentConfig } from "./config-source.js";
export { AgentError, type AgentErrorCode } from "./errors.js";
export { AtomicWriter, contentHash, filesHash } from "./writer.js";
export { fileContent } from "./render.js";
export {
  Scheduler,
  backoffDelayMs,
  leaseAction,
  leaseRefreshDelayMs,
  staticRefreshDelayMs,
} from "./scheduler.js";
export { loadState, saveState, STATE_FILE, type AgentState } from "./state.js";
export type { Provider, FetchedSecret, Lease } from "./providers/provider.js";
export { ROLLOUT_ANNOTATION } from "./on-change.js";
