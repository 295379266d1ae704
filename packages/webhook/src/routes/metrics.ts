/** /metrics: Prometheus text exposition of the webhook's registry. */
import type { FastifyInstance, RawServerBase } from "fastify";
import type { WebhookMetrics } from "../metrics.js";

export function registerMetricsRoute<S extends RawServerBase>(
  app: FastifyInstance<S>,
  metrics: WebhookMetrics,
): void {
  app.get("/metrics", async (_req, reply) => {
    const text = await metrics.registry.metrics();
    return reply.code(200).header("content-type", metrics.registry.contentType).send(text);
  });
}
