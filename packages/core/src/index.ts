/** @dso/core: DSO's pure core. No I/O: annotations and policy in, typed config and patches out. */
export * from "./agent-config.js";
export * from "./agent-paths.js";
export * from "./annotations.js";
export * from "./durations.js";
export * from "./injection-spec.js";
export * from "./kubernetes-types.js";
export * from "./agent-containers.js";
export * from "./mutate.js";
export * from "./nearest-name.js";
export * from "./parsed.js";
export * from "./policy.js";
export * from "./policy-types.js";
export * from "./problems.js";
export * from "./references.js";
export * from "./security-context.js";
export * from "./template.js";
