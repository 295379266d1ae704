/**
 * Where each workload kind keeps the template of the pods it creates, so `dso inject` mutates
 * them exactly as the webhook would mutate the pods.
 */

/** Path from the document root to the pod (template); `[]` is the document itself. */
export const POD_TEMPLATE_PATHS: Readonly<Record<string, readonly string[]>> = {
  Pod: [],
  Deployment: ["spec", "template"],
  StatefulSet: ["spec", "template"],
  DaemonSet: ["spec", "template"],
  ReplicaSet: ["spec", "template"],
  ReplicationController: ["spec", "template"],
  Job: ["spec", "template"],
  CronJob: ["spec", "jobTemplate", "spec", "template"],
};

export function podTemplatePath(kind: unknown): readonly string[] | undefined {
  return typeof kind === "string" && Object.hasOwn(POD_TEMPLATE_PATHS, kind)
    ? POD_TEMPLATE_PATHS[kind]
    : undefined;
}
