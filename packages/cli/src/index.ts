export {
  injectDocuments,
  type InjectOptions,
  type InjectResult,
  type InjectedDocument,
} from "./inject.js";
export { run, USAGE, type Io } from "./cli.js";
export { POD_TEMPLATE_PATHS, podTemplatePath } from "./workloads.js";
export { applyPatchToYaml, pointerSegments } from "./yaml-json-patch.js";
