/**
 * `mutatePod`: the webhook's decision for one pod. Pure: pod and context in, decision out.
 *
 * Pipeline: skip (not asked, or already injected) → resolve annotations and policy, gathering every
 * problem (injection-spec.ts) → build the agent parts (agent-containers.ts) → edit a deep clone of
 * the pod → diff the clone against the original with fast-json-patch, as pepr does, so the patch is
 * correct by construction (escaping, the empty-array rule).
 */
import type { Container, Pod } from "./kubernetes-types.js";
import jsonpatch from "fast-json-patch";
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

  const mutated = structuredClone(pod);
  mutated.metadata = {
    ...mutated.metadata,
    annotations: { ...annotations, [INJECTED_ANNOTATION]: "true" },
  };
  const podSpec = mutated.spec ?? { containers: [] };
  mutated.spec = podSpec;

  const mount = { name: SECRETS_VOLUME, mountPath: spec.mountPath, readOnly: true };
  const addMount = (c: Container): void => {
    if (spec.containers.includes(c.name))
      c.volumeMounts = [...(c.volumeMounts ?? []), { ...mount }];
  };
  podSpec.containers.forEach(addMount);
  podSpec.initContainers?.forEach(addMount);

  // After native sidecars already at the front (a mesh proxy must be up for the agent to reach
  // the network), before the pod's own init containers (so they can use the secrets).
  const inits = podSpec.initContainers ?? [];
  let at = 0;
  while (at < inits.length && inits[at]?.restartPolicy === "Always") at++;
  const added: Container[] = [];
  if (parts.init) added.push(parts.init);
  if (parts.sidecar && agent.sidecarStyle === "native") added.push(parts.sidecar);
  if (added.length > 0)
    podSpec.initContainers = [...inits.slice(0, at), ...added, ...inits.slice(at)];
  if (parts.sidecar && agent.sidecarStyle === "classic") podSpec.containers.push(parts.sidecar);

  podSpec.volumes = [...(podSpec.volumes ?? []), ...parts.volumes];
  const securityContext = podSecurityContextWithFilesGroup(
    podSpec.securityContext,
    agent.filesGroup,
  );
  if (securityContext !== undefined) podSpec.securityContext = securityContext;
  if (spec.onChange?.kind === "signal") podSpec.shareProcessNamespace = true;

  return { kind: "patch", patch: diff(pod, mutated), pod: mutated, config: parts.config };
}

/**
 * The JSON patch from `before` to `after`. Inserting into `initContainers` shifts the pod's own
 * init containers; an element-wise diff would then rewrite them field by field into agent
 * containers (correct, but a patch that "removes command" from a container alarms anyone reading
 * it), so that array is replaced whole and the rest is diffed.
 */
function diff(before: Pod, after: Pod): Operation[] {
  const next = after.spec?.initContainers;
  if (before.spec === undefined || next === undefined) return jsonpatch.compare(before, after);
  const base = structuredClone(before);
  const ops: Operation[] = [];
  if (JSON.stringify(before.spec.initContainers) !== JSON.stringify(next)) {
    ops.push({
      op: before.spec.initContainers === undefined ? "add" : "replace",
      path: "/spec/initContainers",
      value: next,
    });
    if (base.spec) base.spec.initContainers = structuredClone(next);
  }
  return [...ops, ...jsonpatch.compare(base, after)];
}
