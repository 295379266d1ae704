export { buildApp, BODY_LIMIT_BYTES, type AppOptions, type HttpApp, type HttpsApp } from "./app.js";
export {
  allow,
  allowWithPatch,
  deny,
  parseReview,
  ADMISSION_API_VERSION,
  ADMISSION_KIND,
  type AdmissionRequest,
  type AdmissionResponse,
  type AdmissionReviewResponse,
} from "./admission-review.js";
export { loadConfig, helpText, OPTIONS, type WebhookConfig, type ConfigResult } from "./config.js";
export { createLogger, type Logger } from "./logger.js";
export { createMetrics, type WebhookMetrics, type ReviewOutcome } from "./metrics.js";
export { PolicyStore, PolicyError, type PolicySource } from "./policy-store.js";
export { answerReview, type MutateDeps, type ReviewAnswer } from "./routes/mutate.js";
export { startServer, type RunningServer, type ServerDeps } from "./server.js";
export {
  ensureServingCertificate,
  publishCaBundle,
  kubeSelfSignedApi,
  generateServingCertificate,
  caBundlePatch,
  type SecretObject,
  type SelfSignedKubeApi,
  type ServingCertificate,
  type WebhookConfigurationObject,
} from "./self-signed.js";
export {
  startServiceAccountInformer,
  type ServiceAccountLookup,
  type ServiceAccountDirectory,
} from "./service-accounts.js";
export {
  TLS_MIN_VERSION,
  certificateFingerprint,
  readPairFromFiles,
  secureContextOptions,
  TlsError,
  type TlsPair,
} from "./tls.js";
