/**
 * Who may read the secret files (docs/annotations.md, "File permissions").
 *
 * The agent writes files with the policy's mode (0440 by default: owner and group read, nobody
 * else) as its own non-root UID and a group G that every container of the pod belongs to:
 * - if the pod sets `fsGroup`, G is that group: the kubelet gives the emptyDir that group (with
 *   setgid) and adds it to every container's supplementary groups;
 * - otherwise G is the policy's `agent.filesGroup`, which the webhook adds to the pod's
 *   `supplementalGroups`, so every container carries it whatever its own user.
 * The application therefore reads the files through the group, whatever UID it runs as, and a
 * process outside the pod's containers' groups (another UID on the node) cannot.
 */
import type { PodSecurityContext, SecurityContext } from "./kubernetes-types.js";

/** The group that owns the secret files for a pod. */
export function filesGroupFor(pod: PodSecurityContext | undefined, policyGroup: number): number {
  return pod?.fsGroup ?? policyGroup;
}

/** The pod security context after injection: only `supplementalGroups` may gain the files group. */
export function podSecurityContextWithFilesGroup(
  pod: PodSecurityContext | undefined,
  policyGroup: number,
): PodSecurityContext | undefined {
  if (pod?.fsGroup !== undefined) return pod;
  const groups = pod?.supplementalGroups ?? [];
  if (groups.includes(policyGroup)) return pod;
  return { ...pod, supplementalGroups: [...groups, policyGroup] };
}

/** The restricted-profile context of both agent containers. */
export function agentSecurityContext(runAsUser: number, runAsGroup: number): SecurityContext {
  return {
    runAsNonRoot: true,
    runAsUser,
    runAsGroup,
    readOnlyRootFilesystem: true,
    allowPrivilegeEscalation: false,
    privileged: false,
    capabilities: { drop: ["ALL"] },
    seccompProfile: { type: "RuntimeDefault" },
  };
}
