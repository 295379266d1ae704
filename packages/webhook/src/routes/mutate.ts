/**
 * POST /mutate: answers AdmissionReviews for Pod creation.
 *
 * The review path does no network or file I/O: the policy and service-account annotations are
 * read from memory, and the mutation itself is core's pure `mutatePod`.
 */
import { performance } from "node:perf_hooks";
import { mutatePod } from "@dso/core";
import type { FastifyInstance, RawServerBase } from "fastify";
import {
  allow,
  allowWithPatch,
  deny,
  isPodCreate,
  parseReview,
  podOf,
  type AdmissionRequest,
  type AdmissionReviewResponse,
} from "../admission-review.js";
import type { Logger } from "../logger.js";
import type { ReviewOutcome, WebhookMetrics } from "../metrics.js";
import type { PolicySource } from "../policy-store.js";
import type { ServiceAccountLookup } from "../service-accounts.js";

export interface MutateDeps {
  policy: PolicySource;
  logger: Logger;
  metrics: WebhookMetrics;
  /** Present only when the policy lets the webhook read service accounts. */
  serviceAccounts?: () => ServiceAccountLookup | undefined;
}

export interface ReviewAnswer {
  review: AdmissionReviewResponse;
  outcome: Exclude<ReviewOutcome, "error">;
  /** Short decision for the log line: inject, skip, refuse, pass. */
  decision: "inject" | "skip" | "refuse" | "pass";
  /** Why a pod was skipped or refused; never contains secret values (the webhook sees none). */
  detail?: string;
}

/** Decides one parsed AdmissionRequest. Throws only on a bug in the mutation. */
export function answerReview(request: AdmissionRequest, deps: MutateDeps): ReviewAnswer {
  const { uid } = request;
  if (!isPodCreate(request)) {
    return { review: allow(uid), outcome: "skipped", decision: "pass" };
  }
  const pod = podOf(request);
  // Pods made by controllers carry no namespace in the object: the request has it.
  const namespace = request.namespace ?? pod.metadata?.namespace ?? "default";
  const lookup = deps.serviceAccounts?.();
  const serviceAccountAnnotations = lookup?.annotations(
    namespace,
    pod.spec?.serviceAccountName ?? "default",
  );
  const result = mutatePod(pod, {
    namespace,
    policy: deps.policy.current(),
    ...(serviceAccountAnnotations === undefined ? {} : { serviceAccountAnnotations }),
  });
  switch (result.kind) {
    case "skip":
      return { review: allow(uid), outcome: "skipped", decision: "skip", detail: result.reason };
    case "refuse":
      return {
        review: deny(uid, result.message),
        outcome: "refused",
        decision: "refuse",
        detail: result.message,
      };
    case "patch":
      if (result.patch.length === 0) {
        return { review: allow(uid), outcome: "skipped", decision: "skip", detail: "no change" };
      }
      return { review: allowWithPatch(uid, result.patch), outcome: "injected", decision: "inject" };
  }
}

function podLabel(request: AdmissionRequest): string | undefined {
  // DELETE reviews carry `object: null` (the pod is in oldObject).
  const object = request.object;
  const metadata =
    typeof object === "object" && object !== null
      ? (object as { metadata?: { name?: string; generateName?: string } }).metadata
      : undefined;
  return metadata?.name ?? metadata?.generateName ?? request.name;
}

export function registerMutateRoute<S extends RawServerBase>(
  app: FastifyInstance<S>,
  deps: MutateDeps,
): void {
  const { logger, metrics } = deps;
  app.post("/mutate", async (req, reply) => {
    const started = performance.now();
    const parsed = parseReview(req.body);
    if (!parsed.ok) {
      metrics.reviews.inc({ outcome: "error" });
      logger.warn({ status: 400 }, `bad AdmissionReview: ${parsed.message}`);
      return reply.code(400).send({ code: "BAD_ADMISSION_REVIEW", message: parsed.message });
    }
    const { request } = parsed;
    const fields = {
      uid: request.uid,
      namespace: request.namespace,
      pod: podLabel(request),
      operation: request.operation,
      ...(request.dryRun === true ? { dryRun: true } : {}),
    };
    let answer: ReviewAnswer;
    try {
      answer = answerReview(request, deps);
    } catch (error) {
      const latencyMs = performance.now() - started;
      metrics.reviews.inc({ outcome: "error" });
      metrics.reviewDuration.observe(latencyMs / 1000);
      logger.error(
        {
          ...fields,
          decision: "error",
          latencyMs,
          err: error instanceof Error ? error.message : String(error),
        },
        "admission review failed",
      );
      // A 500 lets the API server apply the webhook's failurePolicy.
      return reply
        .code(500)
        .send({ code: "REVIEW_FAILED", message: "internal error reviewing the pod" });
    }
    const latencyMs = performance.now() - started;
    metrics.reviews.inc({ outcome: answer.outcome });
    metrics.reviewDuration.observe(latencyMs / 1000);
    logger.info(
      {
        ...fields,
        decision: answer.decision,
        latencyMs: Math.round(latencyMs * 1000) / 1000,
        ...(answer.decision === "refuse" ? { message: answer.detail } : {}),
        ...(answer.decision === "skip" ? { reason: answer.detail } : {}),
      },
      "admission review",
    );
    return reply.code(200).send(answer.review);
  });
}
