/**
 * Prometheus metrics of the webhook, registered on a registry passed in (tests get their own).
 */
import { Counter, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export type ReviewOutcome = "injected" | "skipped" | "refused" | "error";
export type ReloadResult = "success" | "failure";

export interface WebhookMetrics {
  registry: Registry;
  reviews: Counter<"outcome">;
  reviewDuration: Histogram;
  policyReloads: Counter<"result">;
  certificateReloads: Counter<"result">;
}

export interface MetricsOptions {
  /** Also export the Node.js process metrics (heap, event-loop lag, file descriptors). */
  processMetrics?: boolean;
}

export function createMetrics(
  registry: Registry = new Registry(),
  options: MetricsOptions = {},
): WebhookMetrics {
  if (options.processMetrics === true) collectDefaultMetrics({ register: registry });
  const reviews = new Counter({
    name: "dso_webhook_reviews_total",
    help: "AdmissionReviews answered, by outcome (injected, skipped, refused, error).",
    labelNames: ["outcome"] as const,
    registers: [registry],
  });
  // Zero series up front so dashboards and alerts see every outcome before it first happens.
  for (const outcome of ["injected", "skipped", "refused", "error"] as const)
    reviews.inc({ outcome }, 0);
  const reviewDuration = new Histogram({
    name: "dso_webhook_review_duration_seconds",
    help: "Time to decide one AdmissionReview, from parsed request to response, in seconds.",
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5],
    registers: [registry],
  });
  const policyReloads = new Counter({
    name: "dso_webhook_policy_reloads_total",
    help: "Policy file reloads after a change, by result (success, failure: previous policy kept).",
    labelNames: ["result"] as const,
    registers: [registry],
  });
  const certificateReloads = new Counter({
    name: "dso_webhook_certificate_reloads_total",
    help: "Serving certificate reloads after a change, by result (success, failure: previous kept).",
    labelNames: ["result"] as const,
    registers: [registry],
  });
  for (const result of ["success", "failure"] as const) {
    policyReloads.inc({ result }, 0);
    certificateReloads.inc({ result }, 0);
  }
  return { registry, reviews, reviewDuration, policyReloads, certificateReloads };
}
