/**
 * /healthz: the process is alive and serving. /readyz: it can answer reviews correctly (a
 * certificate and a policy are loaded, service accounts synced when used, not shutting down).
 */
import type { FastifyInstance, RawServerBase } from "fastify";

/** Reasons the webhook is not ready; empty when it is. */
export type ReadinessCheck = () => readonly string[];

export function registerHealthRoutes<S extends RawServerBase>(
  app: FastifyInstance<S>,
  readiness: ReadinessCheck,
): void {
  app.get("/healthz", async (_req, reply) => reply.code(200).send({ status: "ok" }));
  app.get("/readyz", async (_req, reply) => {
    const reasons = readiness();
    if (reasons.length > 0) return reply.code(503).send({ status: "not ready", reasons });
    return reply.code(200).send({ status: "ok" });
  });
}
