import { createServer, type Server } from "node:http";
import type { Logger } from "pino";
import type { AgentMetrics } from "./metrics.js";

export const DEFAULT_TELEMETRY_PORT = 8099;

/**
 * `/healthz` (200, or 503 with the reason) and `/metrics` on 127.0.0.1 only: probes and a
 * Prometheus sidecar reach it inside the pod; nothing outside does.
 */
export async function startTelemetry(options: {
  port: number;
  host?: string;
  metrics: AgentMetrics;
  health: () => string | undefined;
  logger: Logger;
}): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET") {
      res.writeHead(405).end();
      return;
    }
    if (path === "/healthz") {
      const reason = options.health();
      res.writeHead(reason === undefined ? 200 : 503, { "content-type": "text/plain" });
      res.end(reason === undefined ? "ok\n" : `${reason}\n`);
      return;
    }
    if (path === "/metrics") {
      options.metrics.registry.metrics().then(
        (text) => {
          res.writeHead(200, { "content-type": options.metrics.registry.contentType });
          res.end(text);
        },
        () => res.writeHead(500).end(),
      );
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host ?? "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  options.logger.info({ address: server.address() }, "telemetry listening");
  return server;
}
