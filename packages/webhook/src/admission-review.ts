/**
 * AdmissionReview (admission.k8s.io/v1): the shapes the webhook reads and writes, checking a
 * request body, and building responses. Pure: no I/O, no logging.
 */
import type { Pod } from "@dso/core";
import type { Operation } from "fast-json-patch";

export const ADMISSION_API_VERSION = "admission.k8s.io/v1";
export const ADMISSION_KIND = "AdmissionReview";

export interface GroupVersionKind {
  group: string;
  version: string;
  kind: string;
}

/** The fields of an AdmissionRequest the webhook uses. */
export interface AdmissionRequest {
  uid: string;
  kind?: GroupVersionKind;
  subResource?: string;
  name?: string;
  namespace?: string;
  operation?: string;
  object?: unknown;
  dryRun?: boolean;
}

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  status?: { code: number; message: string };
  patchType?: "JSONPatch";
  /** Base64 of the JSON patch. */
  patch?: string;
}

export interface AdmissionReviewResponse {
  apiVersion: typeof ADMISSION_API_VERSION;
  kind: typeof ADMISSION_KIND;
  response: AdmissionResponse;
}

export type ParsedReview = { ok: true; request: AdmissionRequest } | { ok: false; message: string };

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Checks the transport-level shape: the only failures answered with HTTP 400. Everything about
 * the object itself is answered inside an AdmissionResponse.
 */
export function parseReview(body: unknown): ParsedReview {
  if (!isObject(body)) return { ok: false, message: "body is not a JSON object" };
  if (body.apiVersion !== ADMISSION_API_VERSION) {
    return {
      ok: false,
      message: `apiVersion must be ${ADMISSION_API_VERSION}, got ${JSON.stringify(body.apiVersion ?? null)}`,
    };
  }
  if (body.kind !== ADMISSION_KIND) {
    return {
      ok: false,
      message: `kind must be ${ADMISSION_KIND}, got ${JSON.stringify(body.kind ?? null)}`,
    };
  }
  const request = body.request;
  if (!isObject(request)) return { ok: false, message: "request is missing" };
  if (typeof request.uid !== "string" || request.uid === "") {
    return { ok: false, message: "request.uid is missing" };
  }
  return { ok: true, request: request as unknown as AdmissionRequest };
}

/** A CREATE of a Pod itself (not a subresource such as pods/ephemeralcontainers). */
export function isPodCreate(request: AdmissionRequest): boolean {
  const kind = request.kind;
  return (
    request.operation === "CREATE" &&
    kind?.group === "" &&
    kind.kind === "Pod" &&
    (request.subResource === undefined || request.subResource === "") &&
    isObject(request.object)
  );
}

export function podOf(request: AdmissionRequest): Pod {
  return request.object as Pod;
}

function review(response: AdmissionResponse): AdmissionReviewResponse {
  return { apiVersion: ADMISSION_API_VERSION, kind: ADMISSION_KIND, response };
}

export function allow(uid: string): AdmissionReviewResponse {
  return review({ uid, allowed: true });
}

/** Allowed with the patch; an empty patch is sent as no patch at all. */
export function allowWithPatch(uid: string, patch: readonly Operation[]): AdmissionReviewResponse {
  if (patch.length === 0) return allow(uid);
  return review({
    uid,
    allowed: true,
    patchType: "JSONPatch",
    patch: Buffer.from(JSON.stringify(patch), "utf8").toString("base64"),
  });
}

export function deny(uid: string, message: string): AdmissionReviewResponse {
  return review({ uid, allowed: false, status: { code: 403, message } });
}
