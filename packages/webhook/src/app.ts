/**
 * Builds the webhook's fastify application without listening, so tests drive it with
 * `app.inject()` and `server.ts` adds TLS, listening and signals.
 */
import { fastify, type FastifyError, type FastifyInstance } from "fastify";
import type { Server as HttpsServer } from "node:https";
import type { Logger } from "./logger.js";
import type { WebhookMetrics } from "./metrics.js";
import type { PolicySource } from "./policy-store.js";
import { registerHealthRoutes, type ReadinessCheck } from "./routes/health.js";
import { registerMetricsRoute } from "./routes/metrics.js";
import { registerMutateRoute } from "./routes/mutate.js";
import type { ServiceAccountLookup } from "./service-accounts.js";
import { secureContextOptions, type TlsPair } from "./tls.js";

/** AdmissionReviews of the largest pods stay well under this; anything bigger is refused with 413. */
export const BODY_LIMIT_BYTES = 4 * 1024 * 1024;

export interface AppOptions {
  logger: Logger;
  policy: PolicySource;
  metrics: WebhookMetrics;
  /** Current service-account lookup, when the policy enables it. */
  serviceAccounts?: () => ServiceAccountLookup | undefined;
  /** Reasons the webhook is not ready (empty when ready); default: always ready. */
  readiness?: ReadinessCheck;
  bodyLimit?: number;
  /** Time allowed to receive a whole request, in milliseconds. */
  requestTimeoutMs?: number;
  /** Idle time after which a connection is closed, in milliseconds. */
  connectionTimeoutMs?: number;
}

export type HttpsApp = FastifyInstance<HttpsServer>;
export type HttpApp = FastifyInstance;

export function buildApp(options: AppOptions & { tls: TlsPair }): HttpsApp;
export function buildApp(options: AppOptions): HttpApp;
export function buildApp(options: AppOptions & { tls?: TlsPair }): HttpsApp | HttpApp {
  const serverOptions = {
    // Logging is ours (one line per review, no bodies), not fastify's per-request lines.
    logger: false,
    bodyLimit: options.bodyLimit ?? BODY_LIMIT_BYTES,
    requestTimeout: options.requestTimeoutMs ?? 10_000,
    connectionTimeout: options.connectionTimeoutMs ?? 60_000,
    keepAliveTimeout: 30_000,
    // While draining, requests already on open connections are still answered rather than
    // failed with 503 (which the API server would treat as a webhook failure).
    return503OnClosing: false,
  } as const;
  if (options.tls !== undefined) {
    const app = fastify({ ...serverOptions, https: secureContextOptions(options.tls) });
    register(app, options);
    return app;
  }
  const app = fastify(serverOptions);
  register(app, options);
  return app;
}

function register(app: HttpsApp | HttpApp, options: AppOptions): void {
  const { logger, metrics } = options;
  // Both server flavours share one route surface; fastify's generics only differ in raw types.
  const instance = app as unknown as HttpApp;
  instance.setErrorHandler((error: FastifyError, req, reply) => {
    const status =
      error.statusCode !== undefined && error.statusCode >= 400 ? error.statusCode : 500;
    if (req.url === "/mutate" || req.url.startsWith("/mutate?")) {
      metrics.reviews.inc({ outcome: "error" });
    }
    // fastify's messages for transport errors ("Body is not valid JSON", "Request body is too
    // large") describe the request, never echo it.
    const fields = { status, code: error.code, url: req.url };
    if (status >= 500) logger.error(fields, `request failed: ${error.message}`);
    else logger.warn(fields, `request failed: ${error.message}`);
    return reply.code(status).send({
      code: error.code,
      message: status < 500 ? error.message : "internal error",
    });
  });
  registerMutateRoute(instance, {
    policy: options.policy,
    logger,
    metrics,
    ...(options.serviceAccounts === undefined ? {} : { serviceAccounts: options.serviceAccounts }),
  });
  registerHealthRoutes(instance, options.readiness ?? (() => []));
  registerMetricsRoute(instance, metrics);
}
