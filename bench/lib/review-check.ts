/**
 * Checks that an answer is a correct injection, so a benchmark never reports the speed of a
 * broken webhook: a non-2xx, a wrong uid, a patch that does not apply, or a pod without the agent
 * is an error that fails the run.
 */
import jsonpatch, { type Operation } from "fast-json-patch";
import {
  AGENT_CONFIG_ENV,
  INIT_CONTAINER_NAME,
  INJECTED_ANNOTATION,
  SIDECAR_CONTAINER_NAME,
  type AgentConfig,
  type Pod,
} from "@dso/core";
import type { ReviewFixture } from "../fixtures/reviews.js";

interface ReviewResponseBody {
  apiVersion?: unknown;
  kind?: unknown;
  response?: { uid?: unknown; allowed?: unknown; patchType?: unknown; patch?: unknown };
}

/** Why `body` is not the injection of `fixture` under `uid`, or undefined when it is. */
export function reviewProblem(
  body: string,
  fixture: ReviewFixture,
  uid: string,
): string | undefined {
  let parsed: ReviewResponseBody;
  try {
    parsed = JSON.parse(body) as ReviewResponseBody;
  } catch {
    return `response is not JSON: ${body.slice(0, 200)}`;
  }
  const response = parsed.response;
  if (parsed.apiVersion !== "admission.k8s.io/v1" || parsed.kind !== "AdmissionReview") {
    return `not an admission.k8s.io/v1 AdmissionReview: ${body.slice(0, 200)}`;
  }
  if (response?.uid !== uid)
    return `response uid ${String(response?.uid)} is not the request's ${uid}`;
  if (response.allowed !== true) return `pod not allowed: ${body.slice(0, 300)}`;
  if (response.patchType !== "JSONPatch" || typeof response.patch !== "string") {
    return "allowed without a JSONPatch";
  }
  let patch: Operation[];
  try {
    patch = JSON.parse(Buffer.from(response.patch, "base64").toString("utf8")) as Operation[];
  } catch {
    return "patch is not base64 of JSON";
  }
  return patchProblem(patch, fixture);
}

/** Applies `patch` to the fixture's pod (validating every operation) and checks the result. */
export function patchProblem(
  patch: readonly Operation[],
  fixture: ReviewFixture,
): string | undefined {
  let pod: Pod;
  try {
    pod = jsonpatch.applyPatch(
      structuredClone(fixture.review.request.object),
      [...patch],
      true,
      false,
    ).newDocument;
  } catch (error) {
    // fast-json-patch appends the whole document to its message: keep the first line.
    const message = error instanceof Error ? error.message : String(error);
    return `patch does not apply: ${message.split("\n")[0] ?? ""}`;
  }
  if (pod.metadata?.annotations?.[INJECTED_ANNOTATION] !== "true")
    return `no ${INJECTED_ANNOTATION} annotation`;
  const inits = pod.spec?.initContainers ?? [];
  const init = inits.find((c) => c.name === INIT_CONTAINER_NAME);
  if (init === undefined) return `no ${INIT_CONTAINER_NAME} init container`;
  if (!inits.some((c) => c.name === SIDECAR_CONTAINER_NAME))
    return `no ${SIDECAR_CONTAINER_NAME} sidecar`;
  const configJson = init.env?.find((e) => e.name === AGENT_CONFIG_ENV)?.value;
  if (configJson === undefined) return `init container has no ${AGENT_CONFIG_ENV}`;
  const config = JSON.parse(configJson) as AgentConfig;
  if (config.secrets.length !== fixture.secrets) {
    return `agent config has ${config.secrets.length} secrets, the pod asks for ${fixture.secrets}`;
  }
  return undefined;
}
