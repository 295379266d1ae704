/**
 * `mutatePod`: the webhook's decision for one pod. Pure: pod and context in, decision out.
 *
 * Pipeline: skip (not asked, or already injected) → resolve annotations and policy, gathering every
 * problem (injection-spec.ts) → build the agent parts (agent-containers.ts) → build the injected
 * pod and, from the same edits, its JSON patch (with the empty-array rule: an absent array is added
 * whole, an existing one appended to). The tests apply every patch to the original and compare it
 * with the returned pod, so the two cannot drift apart.
 */
import type { Container, Pod } from "./kubernetes-types.js";
import type { Operation } from "fast-json-patch";
import type { AgentConfig } from "./agent-config.js";
import { INJECTED_ANNOTATION, INJECT_ANNOTATION } from "./annotations.js";
import { SECRETS_VOLUME } from "./agent-paths.js";
import { buildAgentParts } from "./agent-containers.js";
import { resolveInjection, type MutationContext } from "./injection-spec.js";
import { formatProblems, type Problem } from "./problems.js";
import { filesGroupFor, podSecurityContextWithFilesGroup } from "./security-context.js";

export type { MutationContext } from "./injection-spec.js";

export type MutationResult =
  | { kind: "skip"; reason: string }
  | { kind: "refuse"; problems: Problem[]; message: string }
  | { kind: "patch"; patch: Operation[]; pod: Pod; config: AgentConfig };

/** Prefix of refusal messages, so `kubectl` output says who refused. */
export const REFUSAL_PREFIX = "dso: pod refused: ";

/** The one-line refusal message listing every problem. */
export function refusalMessage(problems: readonly Problem[]): string {
  return REFUSAL_PREFIX + formatProblems(problems);
}

/**
 * Decides what to do with a pod under review: `skip` (no patch), `refuse` (allowed: false with the
 * message), or `patch` (the JSON patch, the resulting pod and the agent's configuration).
 */
export function mutatePod(pod: Pod, ctx: MutationContext): MutationResult {
  const annotations = pod.metadata?.annotations ?? {};
  if (annotations[INJECT_ANNOTATION] !== "true") {
    return { kind: "skip", reason: `no ${INJECT_ANNOTATION}: "true" annotation` };
  }
  if (annotations[INJECTED_ANNOTATION] === "true") {
    return { kind: "skip", reason: "already injected" };
  }
  const resolved = resolveInjection(pod, ctx);
  if (!resolved.ok) {
    return {
      kind: "refuse",
      problems: resolved.problems,
      message: refusalMessage(resolved.problems),
    };
  }
  const { spec } = resolved;
  const { agent } = ctx.policy;
  const filesGroup = filesGroupFor(pod.spec?.securityContext, agent.filesGroup);
  const parts = buildAgentParts(spec, agent, filesGroup);
  const before = pod.spec ?? { containers: [] };
  const ops: Operation[] = [];

  // The review path is benchmarked (bench/README.md): copying and diffing a whole 100 KB pod cost
  // ~1 ms of CPU per review, so the result shares every untouched subtree with the input (copying
  // only what changes) and the patch is written from the same edits instead of a diff.
  const metadata = {
    ...pod.metadata,
    annotations: { ...annotations, [INJECTED_ANNOTATION]: "true" },
  };
  ops.push({
    op: "add",
    path: `/metadata/annotations/${pointerToken(INJECTED_ANNOTATION)}`,
    value: "true",
  });

  const mount = { name: SECRETS_VOLUME, mountPath: spec.mountPath, readOnly: true };
  const withMount = (c: Container): Container =>
    spec.containers.includes(c.name)
      ? { ...c, volumeMounts: [...(c.volumeMounts ?? []), { ...mount }] }
      : c;
  const containers = before.containers.map(withMount);
  before.containers.forEach((c, i) => {
    if (containers[i] === c) return;
    ops.push(
      c.volumeMounts === undefined
        ? { op: "add", path: `/spec/containers/${i}/volumeMounts`, value: [{ ...mount }] }
        : { op: "add", path: `/spec/containers/${i}/volumeMounts/-`, value: { ...mount } },
    );
  });

  // After native sidecars already at the front (a mesh proxy must be up for the agent to reach
  // the network), before the pod's own init containers (so they can use the secrets). Inserting
  // shifts the pod's own init containers, so the array is replaced whole: an element-wise patch
  // would rewrite them field by field, which alarms anyone reading it.
  const inits = (before.initContainers ?? []).map(withMount);
  let at = 0;
  while (at < inits.length && inits[at]?.restartPolicy === "Always") at++;
  const added: Container[] = [];
  if (parts.init) added.push(parts.init);
  if (parts.sidecar && agent.sidecarStyle === "native") added.push(parts.sidecar);
  const initContainers = [...inits.slice(0, at), ...added, ...inits.slice(at)];
  const initsChanged = added.length > 0 || inits.some((c, i) => c !== before.initContainers?.[i]);
  if (initsChanged)
    ops.push({
      op: before.initContainers === undefined ? "add" : "replace",
      path: "/spec/initContainers",
      value: initContainers,
    });

  if (parts.sidecar && agent.sidecarStyle === "classic") {
    containers.push(parts.sidecar);
    ops.push({ op: "add", path: "/spec/containers/-", value: parts.sidecar });
  }

  const volumes = [...(before.volumes ?? []), ...parts.volumes];
  if (before.volumes === undefined) ops.push({ op: "add", path: "/spec/volumes", value: volumes });
  else for (const v of parts.volumes) ops.push({ op: "add", path: "/spec/volumes/-", value: v });

  const securityContext = podSecurityContextWithFilesGroup(
    before.securityContext,
    agent.filesGroup,
  );
  if (securityContext !== before.securityContext && securityContext !== undefined)
    ops.push({
      op: before.securityContext === undefined ? "add" : "replace",
      path: "/spec/securityContext",
      value: securityContext,
    });

  const shareProcessNamespace = spec.onChange?.kind === "signal" ? true : undefined;
  if (shareProcessNamespace && before.shareProcessNamespace !== true)
    ops.push({
      op: before.shareProcessNamespace === undefined ? "add" : "replace",
      path: "/spec/shareProcessNamespace",
      value: true,
    });

  const mutated: Pod = {
    ...pod,
    metadata,
    spec: {
      ...before,
      containers,
      ...(initsChanged ? { initContainers } : {}),
      volumes,
      ...(securityContext === undefined ? {} : { securityContext }),
      ...(shareProcessNamespace ? { shareProcessNamespace } : {}),
    },
  };
  return { kind: "patch", patch: ops, pod: mutated, config: parts.config };
}

/** A JSON Pointer reference token (RFC 6901): `~` and `/` escaped. */
function pointerToken(key: string): string {
  return key.replaceAll("~", "~0").replaceAll("/", "~1");
}
