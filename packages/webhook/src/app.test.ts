import {
  AGENT_CONFIG_ENV,
  DEFAULT_POLICY,
  type AgentConfig,
  type Container,
  type Pod,
  type Policy,
} from "@dso/core";
import jsonpatch, { type Operation } from "fast-json-patch";
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import type { AdmissionReviewResponse } from "./admission-review.js";
import { buildApp, type HttpApp } from "./app.js";
import { createMetrics } from "./metrics.js";
import { captureLogs, fixture, type CapturedLogs } from "./test-helpers.js";

interface Review {
  apiVersion: string;
  kind: string;
  request: {
    uid: string;
    kind: { group: string; version: string; kind: string };
    namespace?: string;
    operation: string;
    subResource?: string;
    object: Pod & Record<string, unknown>;
  };
}

const deploymentPodReview = (): Review => fixture("review-deployment-pod.json") as Review;

function withAnnotations(review: Review, annotations: Record<string, string> | undefined): Review {
  review.request.object.metadata = { ...review.request.object.metadata, annotations };
  return review;
}

interface Harness {
  app: HttpApp;
  logs: CapturedLogs;
  metricsText: () => Promise<string>;
}

function harness(
  policy: Policy = DEFAULT_POLICY,
  lookup?: Record<string, Record<string, string>>,
): Harness {
  const logs = captureLogs();
  const metrics = createMetrics(new Registry());
  const app = buildApp({
    logger: logs.logger,
    policy: { current: () => policy },
    metrics,
    ...(lookup === undefined
      ? {}
      : { serviceAccounts: () => ({ annotations: (ns, name) => lookup[`${ns}/${name}`] }) }),
  });
  return { app, logs, metricsText: () => metrics.registry.metrics() };
}

async function post(
  app: HttpApp,
  body: unknown,
  url = "/mutate",
): Promise<{ status: number; json: unknown }> {
  const res = await app.inject({
    method: "POST",
    url,
    headers: { "content-type": "application/json" },
    payload: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.statusCode, json: res.json() };
}

function decodePatch(review: AdmissionReviewResponse): Operation[] {
  expect(review.response.patchType).toBe("JSONPatch");
  const text = Buffer.from(review.response.patch ?? "", "base64").toString("utf8");
  return JSON.parse(text) as Operation[];
}

function agentConfigOf(pod: Pod): AgentConfig {
  const init = pod.spec?.initContainers?.find((c: Container) => c.name === "dso-agent-init");
  const value = init?.env?.find((e) => e.name === AGENT_CONFIG_ENV)?.value;
  return JSON.parse(value ?? "null") as AgentConfig;
}

describe("POST /mutate", () => {
  it("injects an annotated Deployment pod with a base64 JSON patch that applies, and is idempotent", async () => {
    const { app } = harness();
    const review = deploymentPodReview();
    const { status, json } = await post(app, review);
    expect(status).toBe(200);
    const answer = json as AdmissionReviewResponse;
    expect(answer.apiVersion).toBe("admission.k8s.io/v1");
    expect(answer.kind).toBe("AdmissionReview");
    expect(answer.response.uid).toBe(review.request.uid);
    expect(answer.response.allowed).toBe(true);

    const patch = decodePatch(answer);
    expect(jsonpatch.validate(patch, review.request.object)).toBeUndefined();
    const pod = jsonpatch.applyPatch(structuredClone(review.request.object), patch, true, false)
      .newDocument as Pod;
    expect(pod.metadata?.annotations?.["dso.io/injected"]).toBe("true");
    expect(pod.spec?.initContainers?.map((c) => c.name)).toEqual(["dso-agent-init", "dso-agent"]);
    expect(pod.spec?.volumes?.map((v) => v.name)).toContain("dso-secrets");
    const api = pod.spec?.containers.find((c) => c.name === "api");
    expect(api?.image).toBe("registry.example.com/payments/api:2.14.1");
    expect(api?.volumeMounts).toContainEqual({
      name: "dso-secrets",
      mountPath: "/var/run/secrets/dso",
      readOnly: true,
    });
    // The namespace came from the request: the pod object from a ReplicaSet has none.
    expect(agentConfigOf(pod).pod?.namespace).toBe("payments");

    const again = deploymentPodReview();
    again.request.object = pod;
    again.request.uid = "second-look";
    const second = await post(app, again);
    expect(second.json).toEqual({
      apiVersion: "admission.k8s.io/v1",
      kind: "AdmissionReview",
      response: { uid: "second-look", allowed: true },
    });
  });

  it("accepts the timeout query the API server appends", async () => {
    const { app, metricsText } = harness();
    const { status, json } = await post(app, deploymentPodReview(), "/mutate?timeout=10s");
    expect(status).toBe(200);
    expect((json as AdmissionReviewResponse).response.patchType).toBe("JSONPatch");
    const bad = await post(app, "{", "/mutate?timeout=10s");
    expect(bad.status).toBe(400);
    expect(await metricsText()).toContain('dso_webhook_reviews_total{outcome="error"} 1');
  });

  it("passes the service account's annotations to the mutation", async () => {
    const { app } = harness(DEFAULT_POLICY, {
      "payments/payments-api": {
        "azure.workload.identity/client-id": "11111111-2222-3333-4444-555555555555",
      },
    });
    const review = withAnnotations(deploymentPodReview(), {
      "dso.io/inject": "true",
      "dso.io/provider": "azure",
      "dso.io/azure-vault": "payments-kv",
      "dso.io/azure-tenant-id": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
      "dso.io/secret-db-password": "db-password",
    });
    const { json } = await post(app, review);
    const patch = decodePatch(json as AdmissionReviewResponse);
    const pod = jsonpatch.applyPatch(structuredClone(review.request.object), patch, true, false)
      .newDocument as Pod;
    expect(agentConfigOf(pod).azure?.clientId).toBe("11111111-2222-3333-4444-555555555555");
  });

  const passThrough: [string, (r: Review) => void][] = [
    ["an unannotated pod", (r) => withAnnotations(r, undefined)],
    ["inject: false", (r) => withAnnotations(r, { "dso.io/inject": "false" })],
    [
      "a DELETE (object null, oldObject set)",
      (r) => {
        const old = r.request.object;
        Object.assign(r.request, {
          operation: "DELETE",
          object: null,
          oldObject: old,
          name: "payments-api-7c9f8d6b5-x2k9p",
        });
      },
    ],
    ["an UPDATE", (r) => (r.request.operation = "UPDATE")],
    ["a CONNECT", (r) => (r.request.operation = "CONNECT")],
    [
      "a Deployment",
      (r) => (r.request.kind = { group: "apps", version: "v1", kind: "Deployment" }),
    ],
    [
      "a pods/ephemeralcontainers subresource",
      (r) => (r.request.subResource = "ephemeralcontainers"),
    ],
  ];
  it.each(passThrough)("allows %s with no patch", async (_name, change) => {
    const { app } = harness();
    const review = deploymentPodReview();
    change(review);
    const { status, json } = await post(app, review);
    expect(status).toBe(200);
    expect(json).toEqual({
      apiVersion: "admission.k8s.io/v1",
      kind: "AdmissionReview",
      response: { uid: review.request.uid, allowed: true },
    });
  });

  it("refuses a pod with wrong annotations, listing every problem", async () => {
    const { app } = harness();
    const review = withAnnotations(deploymentPodReview(), {
      "dso.io/inject": "true",
      "dso.io/provider": "vault",
      "dso.io/vault-address": "https://vault.vault.svc:8200",
      "dso.io/vault-role": "payments-api",
      "dso.io/secert-db": "secret/data/payments/db#password",
      "dso.io/mount-path": "relative/path",
    });
    const { status, json } = await post(app, review);
    expect(status).toBe(200);
    const answer = json as AdmissionReviewResponse;
    expect(answer.response.allowed).toBe(false);
    expect(answer.response.patch).toBeUndefined();
    expect(answer.response.status?.code).toBe(403);
    expect(answer.response.status?.message).toContain("dso.io/secert-db");
    expect(answer.response.status?.message).toContain("dso.io/secret-db");
    expect(answer.response.status?.message).toContain("dso.io/mount-path");
  });

  it("refuses in a namespace where the policy turns injection off", async () => {
    const policy: Policy = {
      ...DEFAULT_POLICY,
      namespaces: [{ match: ["pay*"], injection: false }],
    };
    const { app } = harness(policy);
    const { json } = await post(app, deploymentPodReview());
    expect((json as AdmissionReviewResponse).response.allowed).toBe(false);
  });

  const badBodies: [string, string, string][] = [
    ["not JSON", "{not json", "JSON"],
    ["a JSON array", "[]", "not a JSON object"],
    [
      "no request",
      JSON.stringify({ apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview" }),
      "request is missing",
    ],
    [
      "the v1beta1 API",
      JSON.stringify({ ...deploymentPodReview(), apiVersion: "admission.k8s.io/v1beta1" }),
      "apiVersion must be admission.k8s.io/v1",
    ],
    [
      "another kind",
      JSON.stringify({ ...deploymentPodReview(), kind: "ConversionReview" }),
      "kind must be AdmissionReview",
    ],
    [
      "no uid",
      JSON.stringify({ apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", request: {} }),
      "request.uid is missing",
    ],
  ];
  it.each(badBodies)(
    "answers %s with HTTP 400 and a clear message",
    async (_name, body, message) => {
      const { app, metricsText } = harness();
      const { status, json } = await post(app, body);
      expect(status).toBe(400);
      expect((json as { message: string }).message).toContain(message);
      expect(await metricsText()).toContain('dso_webhook_reviews_total{outcome="error"} 1');
    },
  );

  it("answers an oversized body with 413", async () => {
    const { app } = harness();
    const review = deploymentPodReview();
    review.request.object.metadata = {
      ...review.request.object.metadata,
      labels: { padding: "x".repeat(5 * 1024 * 1024) },
    };
    const { status } = await post(app, review);
    expect(status).toBe(413);
  });
});

describe("review logs and metrics", () => {
  it("logs one line per review with identifiers and decision, never the body", async () => {
    const { app, logs, metricsText } = harness();
    await post(app, deploymentPodReview());
    await post(app, withAnnotations(deploymentPodReview(), undefined));
    const refused = withAnnotations(deploymentPodReview(), {
      "dso.io/inject": "true",
      "dso.io/secert-db": "secret/data/payments/db#password",
    });
    await post(app, refused);

    const reviews = logs.lines().filter((l) => l.msg === "admission review");
    expect(reviews).toHaveLength(3);
    for (const line of reviews) {
      expect(line).toMatchObject({
        uid: "705ab4f5-6393-11e8-b7cc-42010a800002",
        namespace: "payments",
        pod: "payments-api-7c9f8d6b5-",
        level: "info",
      });
      expect(typeof line.latencyMs).toBe("number");
    }
    expect(reviews.map((l) => l.decision)).toEqual(["inject", "skip", "refuse"]);
    expect(reviews[2]?.message).toContain("dso.io/secert-db");

    const text = logs.text();
    for (const fromBody of [
      "registry.example.com/payments/api",
      "secret/data/payments",
      "kube-api-access",
      "ownerReferences",
      "replicaset-controller",
      '"spec"',
      '"object"',
    ]) {
      expect(text).not.toContain(fromBody);
    }

    const metrics = await metricsText();
    expect(metrics).toContain('dso_webhook_reviews_total{outcome="injected"} 1');
    expect(metrics).toContain('dso_webhook_reviews_total{outcome="skipped"} 1');
    expect(metrics).toContain('dso_webhook_reviews_total{outcome="refused"} 1');
    expect(metrics).toContain("dso_webhook_review_duration_seconds_count 3");
  });

  it("serves /healthz, /readyz and /metrics", async () => {
    const { app } = harness();
    expect((await app.inject({ url: "/healthz" })).statusCode).toBe(200);
    expect((await app.inject({ url: "/readyz" })).statusCode).toBe(200);
    const metrics = await app.inject({ url: "/metrics" });
    expect(metrics.statusCode).toBe(200);
    expect(metrics.headers["content-type"]).toContain("text/plain");
    expect(metrics.body).toContain("dso_webhook_policy_reloads_total");
    expect(metrics.body).toContain("dso_webhook_certificate_reloads_total");
  });

  it("reports not ready with the reasons", async () => {
    const logs = captureLogs();
    const app = buildApp({
      logger: logs.logger,
      policy: { current: () => DEFAULT_POLICY },
      metrics: createMetrics(new Registry()),
      readiness: () => ["shutting down"],
    });
    const res = await app.inject({ url: "/readyz" });
    expect(res.statusCode).toBe(503);
    expect(res.json()).toEqual({ status: "not ready", reasons: ["shutting down"] });
  });
});
