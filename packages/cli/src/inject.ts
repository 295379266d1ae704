/**
 * Offline injection preview: multi-document YAML in, the same documents out with every pod
 * (template) mutated by core's `mutatePod`, the function the webhook runs. Pure: text in, text out.
 */
import { isDeepStrictEqual } from "node:util";
import { mutatePod, type MutationContext, type Pod, type Policy } from "@dso/core";
import { parseAllDocuments, type Document } from "yaml";
import { applyPatchToYaml } from "./yaml-json-patch.js";
import { podTemplatePath } from "./workloads.js";

export interface InjectOptions {
  policy: Policy;
  /** Namespace for documents that name none (kubectl's `-n`); default `default`. */
  namespace?: string;
  /**
   * Service-account annotations, keyed `<namespace>/<name>`, standing in for the cluster's. When
   * absent and the policy lets the webhook read service accounts, the ServiceAccounts in the
   * input are used, as the webhook would see them once applied.
   */
  serviceAccountAnnotations?: Readonly<Record<string, Readonly<Record<string, string>>>>;
  /** Name of the input, used in error messages. */
  source?: string;
}

export interface InjectedDocument {
  kind: string;
  name: string;
  decision: "injected" | "skipped" | "passed";
}

export type InjectResult =
  { ok: true; output: string; documents: InjectedDocument[] } | { ok: false; errors: string[] };

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function metadataOf(value: unknown): Json {
  return isObject(value) && isObject(value.metadata) ? value.metadata : {};
}

/** The document's own namespace, else kubectl's `-n`, else `default`. */
function namespaceOf(object: Json, options: InjectOptions): string {
  const { namespace } = metadataOf(object);
  return typeof namespace === "string" && namespace !== ""
    ? namespace
    : (options.namespace ?? "default");
}

function nameOf(object: Json): string {
  const metadata = metadataOf(object);
  if (typeof metadata.name === "string") return metadata.name;
  if (typeof metadata.generateName === "string") return metadata.generateName;
  return "<unnamed>";
}

function valueAt(root: unknown, path: readonly string[]): unknown {
  let node = root;
  for (const key of path) node = isObject(node) ? node[key] : undefined;
  return node;
}

function render(docs: readonly Document[]): string {
  return docs
    .map((doc, i) => {
      // Every document after the first needs its own marker, whatever the input had.
      if (i > 0 && doc.directives !== undefined) doc.directives.docStart = true;
      return doc.toString({ flowCollectionPadding: false });
    })
    .join("");
}

interface Collected {
  errors: string[];
  documents: InjectedDocument[];
}

function normalized(pod: unknown): unknown {
  const value = isObject(pod) ? { metadata: pod.metadata, spec: pod.spec } : {};
  // Drops undefined members so both sides compare as the JSON they are.
  return JSON.parse(JSON.stringify(value)) as unknown;
}

/** Injects the pod (template) of `object`, which sits at `base` in `doc` (`[]`: the root). */
function injectObject(
  doc: Document,
  object: unknown,
  base: readonly string[],
  options: InjectOptions,
  out: Collected,
): void {
  if (!isObject(object)) return;
  const kind = typeof object.kind === "string" ? object.kind : "<no kind>";
  const name = nameOf(object);
  if (kind === "List" && Array.isArray(object.items)) {
    // `kubectl get -o yaml` output: every item is handled like a document of its own.
    object.items.forEach((item, i) => {
      injectObject(doc, item, [...base, "items", String(i)], options, out);
    });
    return;
  }
  const templatePath = podTemplatePath(object.kind);
  const template = templatePath === undefined ? undefined : valueAt(object, templatePath);
  if (templatePath === undefined || !isObject(template)) {
    out.documents.push({ kind, name, decision: "passed" });
    return;
  }
  const path = [...base, ...templatePath];
  // Unchecked on purpose: mutatePod validates what it reads and reports problems by field.
  const pod = (
    templatePath.length === 0 ? template : { apiVersion: "v1", kind: "Pod", ...template }
  ) as Pod;
  const namespace = namespaceOf(object, options);
  const account = pod.spec?.serviceAccountName ?? "default";
  const saAnnotations = options.serviceAccountAnnotations?.[`${namespace}/${account}`];
  const ctx: MutationContext = {
    namespace,
    policy: options.policy,
    ...(saAnnotations === undefined ? {} : { serviceAccountAnnotations: { ...saAnnotations } }),
  };
  const result = mutatePod(pod, ctx);
  if (result.kind === "refuse") {
    out.errors.push(`error: ${kind}/${name}: ${result.message}`);
    return;
  }
  if (result.kind === "skip" || result.patch.length === 0) {
    out.documents.push({ kind, name, decision: "skipped" });
    return;
  }
  applyPatchToYaml(doc, path, result.patch);
  // Belt and braces: if editing the YAML in place did not give exactly the mutated pod, replace
  // the pod's fields wholesale (losing comments there, never correctness).
  if (!isDeepStrictEqual(normalized(valueAt(doc.toJS(), path)), normalized(result.pod))) {
    doc.setIn(
      [...path, "metadata"],
      doc.createNode(result.pod.metadata, { aliasDuplicateObjects: false }),
    );
    doc.setIn([...path, "spec"], doc.createNode(result.pod.spec, { aliasDuplicateObjects: false }));
  }
  out.documents.push({ kind, name, decision: "injected" });
}

export function injectDocuments(text: string, options: InjectOptions): InjectResult {
  const source = options.source ?? "input";
  const docs = parseAllDocuments(text);
  if (!Array.isArray(docs)) return { ok: true, output: "", documents: [] };

  const out: Collected = { errors: [], documents: [] };
  const kept: Document[] = [];
  if (options.serviceAccountAnnotations === undefined && options.policy.readServiceAccounts) {
    options = { ...options, serviceAccountAnnotations: serviceAccountsIn(docs, options) };
  }
  docs.forEach((doc, index) => {
    if (doc.errors.length > 0) {
      const first = doc.errors[0]?.message.split("\n")[0] ?? "";
      out.errors.push(`error: ${source}: document ${index + 1} is not valid YAML: ${first}`);
      return;
    }
    const object: unknown = doc.toJS();
    // Empty documents (a trailing `---`) are dropped, as kubectl does.
    if (object === null || object === undefined) return;
    kept.push(doc);
    injectObject(doc, object, [], options, out);
  });

  if (out.errors.length > 0) return { ok: false, errors: out.errors };
  return { ok: true, output: render(kept), documents: out.documents };
}

/** Annotations of the ServiceAccounts in the input, keyed `<namespace>/<name>`. */
function serviceAccountsIn(
  docs: readonly Document[],
  options: InjectOptions,
): Record<string, Record<string, string>> {
  const found: Record<string, Record<string, string>> = {};
  for (const doc of docs) {
    if (doc.errors.length > 0) continue;
    const object: unknown = doc.toJS();
    if (!isObject(object) || object.kind !== "ServiceAccount") continue;
    const metadata = metadataOf(object);
    if (typeof metadata.name !== "string" || !isObject(metadata.annotations)) continue;
    const namespace = namespaceOf(object, options);
    const annotations: Record<string, string> = {};
    for (const [key, value] of Object.entries(metadata.annotations))
      if (typeof value === "string") annotations[key] = value;
    found[`${namespace}/${metadata.name}`] = annotations;
  }
  return found;
}
