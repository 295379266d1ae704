/**
 * A problem found while validating user input (annotations, policy, agent config).
 * Validation gathers every problem and reports them together, so a user fixes them in one pass.
 */
export interface Problem {
  /** The offending field, e.g. the annotation key `dso.io/secret-db` or a policy path `namespaces[2].match`. */
  field: string;
  /** What is wrong and how to fix it, written for the user. Never contains a secret value. */
  message: string;
}

/** Joins problems into the one-line-per-problem text shown by kubectl and in events. */
export function formatProblems(problems: readonly Problem[]): string {
  return problems.map((p) => `${p.field}: ${p.message}`).join("; ");
}
