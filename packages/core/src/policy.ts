/**
 * The cluster-wide injection policy: loading (`parsePolicy`) and the checks `mutatePod` applies.
 * The format is documented in docs/policy.md; the types are in policy-types.ts.
 */
import { parseDocument } from "yaml";
import type { ProviderName } from "./agent-config.js";
import { PROVIDERS, SETTINGS, parseVaultAddresses } from "./annotations.js";
import { didYouMean } from "./nearest-name.js";
import {
  SETTING_NAMES,
  type AgentPolicy,
  type NamespaceRule,
  type Policy,
  type SettingName,
} from "./policy-types.js";
import type { Problem } from "./problems.js";
import { parseAzureVault } from "./references.js";

export const POLICY_API_VERSION = "dso.io/v1";
export const POLICY_KIND = "InjectionPolicy";
export const DEFAULT_AGENT_IMAGE = "ghcr.io/dso-project/dso-agent:0.1.0";

/** The policy in force when no policy file is given: built-in defaults, every override allowed. */
export const DEFAULT_POLICY: Policy = {
  defaults: {
    "mount-path": "/var/run/secrets/dso",
    refresh: "5m",
    mode: "init-and-sidecar",
    "vault-auth-path": "auth/kubernetes",
    "vault-auth-method": "kubernetes",
    "vault-audience": "vault",
    "azure-auth": "workload-identity",
  },
  allowOverrides: ["*"],
  agent: {
    image: DEFAULT_AGENT_IMAGE,
    sidecarStyle: "native",
    runAsUser: 65532,
    filesGroup: 65532,
    fileMode: 0o440,
    tokenExpirationSeconds: 600,
    revokeOnShutdown: false,
    telemetryPort: 8099,
  },
  readServiceAccounts: false,
  namespaces: [],
};

export type ParsedPolicy = { ok: true; policy: Policy } | { ok: false; problems: Problem[] };

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function typeName(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  return `a ${typeof value}`;
}

/** Collects problems while walking the document; every check adds to the same list. */
class Checker {
  readonly problems: Problem[] = [];

  add(field: string, message: string): void {
    this.problems.push({ field, message });
  }

  object(value: unknown, field: string): Json | undefined {
    if (isObject(value)) return value;
    this.add(field, `must be a mapping, not ${typeName(value)}`);
    return undefined;
  }

  keys(object: Json, known: readonly string[], prefix: string): void {
    for (const key of Object.keys(object)) {
      if (!known.includes(key)) {
        this.add(
          `${prefix}${key}`,
          `is not a policy field${didYouMean(key, known)}; known: ${known.join(", ")}`,
        );
      }
    }
  }

  string(value: unknown, field: string): string | undefined {
    if (typeof value === "string" && value.trim() !== "") return value.trim();
    this.add(
      field,
      typeof value === "string" ? "must not be empty" : `must be a string, not ${typeName(value)}`,
    );
    return undefined;
  }

  boolean(value: unknown, field: string): boolean | undefined {
    if (typeof value === "boolean") return value;
    this.add(field, `must be true or false, not ${typeName(value)}`);
    return undefined;
  }

  integer(value: unknown, field: string, min: number, max: number): number | undefined {
    if (typeof value === "number" && Number.isInteger(value) && value >= min && value <= max)
      return value;
    this.add(field, `must be a whole number from ${min} to ${max}`);
    return undefined;
  }

  oneOf<T extends string>(value: unknown, field: string, values: readonly T[]): T | undefined {
    if (typeof value === "string" && (values as readonly string[]).includes(value))
      return value as T;
    const shown = typeof value === "string" ? `"${value}"` : typeName(value);
    this.add(
      field,
      `must be one of ${values.join(", ")}, not ${shown}${typeof value === "string" ? didYouMean(value, values) : ""}`,
    );
    return undefined;
  }

  list(value: unknown, field: string): unknown[] | undefined {
    if (Array.isArray(value)) return value as unknown[];
    this.add(field, `must be a list, not ${typeName(value)}`);
    return undefined;
  }
}

const TOP_KEYS = [
  "apiVersion",
  "kind",
  "defaults",
  "allowOverrides",
  "agent",
  "readServiceAccounts",
  "namespaces",
] as const;
const AGENT_KEYS = [
  "image",
  "imagePullPolicy",
  "sidecarStyle",
  "runAsUser",
  "filesGroup",
  "fileMode",
  "tokenExpirationSeconds",
  "revokeOnShutdown",
  "telemetryPort",
] as const satisfies readonly (keyof AgentPolicy)[];
const RULE_KEYS = [
  "match",
  "injection",
  "allowedProviders",
  "allowedVaultAddresses",
  "allowedVaultRoles",
  "allowedAzureVaults",
] as const satisfies readonly (keyof NamespaceRule)[];

/**
 * Parses a policy file (YAML; JSON is YAML). Every problem is listed with its path
 * (`namespaces[2].allowedProviders[0]`); fields left out take their defaults from DEFAULT_POLICY.
 */
export function parsePolicy(text: string): ParsedPolicy {
  const doc = parseDocument(text, { prettyErrors: false });
  if (doc.errors.length > 0) {
    return {
      ok: false,
      problems: doc.errors.map((e) => ({
        field: "policy",
        message: `is not valid YAML: ${e.message.split("\n")[0] ?? ""}`,
      })),
    };
  }
  const check = new Checker();
  const root = check.object(doc.toJS() as unknown, "policy");
  if (root === undefined) return { ok: false, problems: check.problems };
  check.keys(root, TOP_KEYS, "");

  if (root.apiVersion !== POLICY_API_VERSION) {
    check.add("apiVersion", `must be ${POLICY_API_VERSION}`);
  }
  if (root.kind !== POLICY_KIND) check.add("kind", `must be ${POLICY_KIND}`);

  const policy: Policy = {
    defaults: { ...DEFAULT_POLICY.defaults },
    allowOverrides: DEFAULT_POLICY.allowOverrides,
    agent: { ...DEFAULT_POLICY.agent },
    readServiceAccounts: DEFAULT_POLICY.readServiceAccounts,
    namespaces: [],
  };
  if (root.defaults !== undefined && root.defaults !== null) {
    const defaults = check.object(root.defaults, "defaults");
    if (defaults) Object.assign(policy.defaults, parseDefaults(defaults, check));
  }
  if (root.allowOverrides !== undefined) {
    policy.allowOverrides = parseAllowOverrides(root.allowOverrides, check);
  }
  if (root.agent !== undefined && root.agent !== null) {
    const agent = check.object(root.agent, "agent");
    if (agent) parseAgent(agent, policy.agent, check);
  }
  if (root.readServiceAccounts !== undefined) {
    policy.readServiceAccounts =
      check.boolean(root.readServiceAccounts, "readServiceAccounts") ?? false;
  }
  if (root.namespaces !== undefined && root.namespaces !== null) {
    const rules = check.list(root.namespaces, "namespaces") ?? [];
    rules.forEach((rule, i) => {
      const parsed = parseRule(rule, `namespaces[${i}]`, check);
      if (parsed) policy.namespaces.push(parsed);
    });
  }
  return check.problems.length > 0 ? { ok: false, problems: check.problems } : { ok: true, policy };
}

function parseDefaults(defaults: Json, check: Checker): Partial<Record<SettingName, string>> {
  const out: Partial<Record<SettingName, string>> = {};
  check.keys(defaults, SETTING_NAMES, "defaults.");
  for (const name of SETTING_NAMES) {
    const raw = defaults[name];
    if (raw === undefined) continue;
    const field = `defaults.${name}`;
    // Numbers are accepted for settings like agent-cpu: 1, where YAML's typing is a nuisance.
    const value = typeof raw === "number" ? String(raw) : check.string(raw, field);
    if (value === undefined) continue;
    const parsed = SETTINGS[name].parse(value);
    if (parsed.ok) out[name] = value;
    else check.add(field, parsed.message);
  }
  return out;
}

function parseAllowOverrides(value: unknown, check: Checker): (SettingName | "*")[] {
  const list = check.list(value, "allowOverrides") ?? [];
  const names: readonly string[] = ["*", ...SETTING_NAMES];
  const out: (SettingName | "*")[] = [];
  list.forEach((item, i) => {
    const name = check.oneOf(item, `allowOverrides[${i}]`, names);
    if (name !== undefined) out.push(name as SettingName | "*");
  });
  return out;
}

function parseAgent(agent: Json, out: AgentPolicy, check: Checker): void {
  check.keys(agent, AGENT_KEYS, "agent.");
  if (agent.image !== undefined) out.image = check.string(agent.image, "agent.image") ?? out.image;
  if (agent.imagePullPolicy !== undefined) {
    const pull = check.oneOf(agent.imagePullPolicy, "agent.imagePullPolicy", [
      "Always",
      "IfNotPresent",
      "Never",
    ] as const);
    if (pull) out.imagePullPolicy = pull;
  }
  if (agent.sidecarStyle !== undefined) {
    out.sidecarStyle =
      check.oneOf(agent.sidecarStyle, "agent.sidecarStyle", ["native", "classic"] as const) ??
      out.sidecarStyle;
  }
  if (agent.runAsUser !== undefined) {
    out.runAsUser =
      check.integer(agent.runAsUser, "agent.runAsUser", 1, 2147483647) ?? out.runAsUser;
  }
  if (agent.filesGroup !== undefined) {
    out.filesGroup =
      check.integer(agent.filesGroup, "agent.filesGroup", 1, 2147483647) ?? out.filesGroup;
  }
  if (agent.fileMode !== undefined) {
    const mode = parseFileMode(agent.fileMode);
    if (typeof mode === "number") out.fileMode = mode;
    else check.add("agent.fileMode", mode);
  }
  if (agent.tokenExpirationSeconds !== undefined) {
    out.tokenExpirationSeconds =
      check.integer(agent.tokenExpirationSeconds, "agent.tokenExpirationSeconds", 600, 86400) ??
      out.tokenExpirationSeconds;
  }
  if (agent.revokeOnShutdown !== undefined) {
    out.revokeOnShutdown =
      check.boolean(agent.revokeOnShutdown, "agent.revokeOnShutdown") ?? out.revokeOnShutdown;
  }
  if (agent.telemetryPort !== undefined) {
    out.telemetryPort =
      check.integer(agent.telemetryPort, "agent.telemetryPort", 1, 65535) ?? out.telemetryPort;
  }
}

/**
 * A file mode written as an octal string (`"0440"`): YAML 1.2 reads an unquoted 0440 as the
 * decimal 440, so numbers are refused rather than silently misread. Other users get no access,
 * and the group must be able to read (that is how application containers read the files).
 */
export function parseFileMode(value: unknown): number | string {
  if (typeof value !== "string" || !/^0?[0-7]{3}$/.test(value.trim())) {
    return `must be a quoted octal string like "0440", not ${typeof value === "string" ? `"${value}"` : typeName(value)}`;
  }
  const mode = parseInt(value.trim(), 8);
  if ((mode & 0o007) !== 0) return `"${value}" gives other users access; use a mode like "0440"`;
  if ((mode & 0o040) === 0)
    return `"${value}" does not let the group read, so application containers could not read the files; use "0440"`;
  return mode;
}

/** Formats a mode as the policy file writes it: 0o440 → "0440". */
export function formatFileMode(mode: number): string {
  return `0${mode.toString(8).padStart(3, "0")}`;
}

function stringList(value: unknown, field: string, check: Checker): string[] {
  const list = check.list(value, field) ?? [];
  const out: string[] = [];
  list.forEach((item, i) => {
    const s = check.string(item, `${field}[${i}]`);
    if (s !== undefined) out.push(s);
  });
  return out;
}

function parseRule(value: unknown, field: string, check: Checker): NamespaceRule | undefined {
  const rule = check.object(value, field);
  if (rule === undefined) return undefined;
  check.keys(rule, RULE_KEYS, `${field}.`);
  const out: NamespaceRule = { match: [] };
  if (rule.match === undefined)
    check.add(`${field}.match`, "is required: list namespace names or globs like team-*");
  else if (typeof rule.match === "string") out.match = [rule.match];
  else {
    out.match = stringList(rule.match, `${field}.match`, check);
    if (Array.isArray(rule.match) && rule.match.length === 0)
      check.add(`${field}.match`, "must list at least one namespace");
  }
  if (rule.injection !== undefined) {
    const injection = check.boolean(rule.injection, `${field}.injection`);
    if (injection !== undefined) out.injection = injection;
  }
  if (rule.allowedProviders !== undefined) {
    const list = check.list(rule.allowedProviders, `${field}.allowedProviders`) ?? [];
    out.allowedProviders = [];
    list.forEach((p, i) => {
      const provider = check.oneOf(p, `${field}.allowedProviders[${i}]`, PROVIDERS);
      if (provider) out.allowedProviders?.push(provider);
    });
  }
  if (rule.allowedVaultAddresses !== undefined) {
    out.allowedVaultAddresses = [];
    stringList(rule.allowedVaultAddresses, `${field}.allowedVaultAddresses`, check).forEach(
      (a, i) => {
        const parsed = parseVaultAddresses(a);
        if (parsed.ok && parsed.value.length === 1 && parsed.value[0] !== undefined)
          out.allowedVaultAddresses?.push(parsed.value[0]);
        else
          check.add(
            `${field}.allowedVaultAddresses[${i}]`,
            parsed.ok ? "must be one address" : parsed.message,
          );
      },
    );
  }
  if (rule.allowedVaultRoles !== undefined) {
    out.allowedVaultRoles = stringList(rule.allowedVaultRoles, `${field}.allowedVaultRoles`, check);
  }
  if (rule.allowedAzureVaults !== undefined) {
    out.allowedAzureVaults = [];
    stringList(rule.allowedAzureVaults, `${field}.allowedAzureVaults`, check).forEach((v, i) => {
      const parsed = parseAzureVault(v);
      if (parsed.ok) out.allowedAzureVaults?.push(parsed.value);
      else check.add(`${field}.allowedAzureVaults[${i}]`, parsed.message);
    });
  }
  return out;
}

// ---- Evaluation, used by mutatePod ----

/** Shell-style glob: `*` any run of characters, `?` one character; everything else literal. */
export function globMatches(pattern: string, value: string): boolean {
  const source = pattern
    .split("")
    .map((c) => (c === "*" ? ".*" : c === "?" ? "." : c.replace(/[.+^${}()|[\]\\]/g, "\\$&")))
    .join("");
  return new RegExp(`^${source}$`).test(value);
}

export interface MatchedRule {
  index: number;
  rule: NamespaceRule;
}

/** The first rule whose `match` covers the namespace. */
export function namespaceRuleFor(policy: Policy, namespace: string): MatchedRule | undefined {
  const index = policy.namespaces.findIndex((rule) =>
    rule.match.some((m) => globMatches(m, namespace)),
  );
  const rule = policy.namespaces[index];
  return rule === undefined ? undefined : { index, rule };
}

/** `policy namespaces[1] (match team-*)`, how refusals name a rule. */
export function describeRule(matched: MatchedRule): string {
  return `policy namespaces[${matched.index}] (match ${matched.rule.match.join(", ")})`;
}

/** A refusal when the namespace's rule turns injection off. */
export function injectionDisabledProblem(policy: Policy, namespace: string): Problem | undefined {
  const matched = namespaceRuleFor(policy, namespace);
  if (matched?.rule.injection !== false) return undefined;
  return {
    field: "dso.io/inject",
    message: `injection is turned off in namespace "${namespace}" by ${describeRule(matched)}`,
  };
}

export function overrideAllowed(policy: Policy, name: SettingName): boolean {
  return policy.allowOverrides.includes("*") || policy.allowOverrides.includes(name);
}

export interface ResolvedSetting {
  /** The raw value in force, or undefined when nothing sets it. */
  raw: string | undefined;
  source: "annotation" | "policy" | "built-in" | "unset";
  /** Set when the pod overrides a setting the policy does not let it override. */
  problem?: Problem;
}

/**
 * The value of a setting for a pod: its annotation when the policy allows the override, else the
 * policy's default, else the built-in default. An annotation that repeats the value in force is
 * accepted even when overrides are off, so copying a team's standard annotations is harmless.
 */
export function resolveSetting(
  policy: Policy,
  annotations: Readonly<Record<string, string>>,
  name: SettingName,
): ResolvedSetting {
  const definition = SETTINGS[name];
  const fromPolicy = policy.defaults[name];
  const fallback: ResolvedSetting =
    fromPolicy !== undefined
      ? { raw: fromPolicy, source: "policy" }
      : definition.default !== undefined
        ? { raw: definition.default, source: "built-in" }
        : { raw: undefined, source: "unset" };
  const annotated = annotations[definition.annotation];
  if (annotated === undefined) return fallback;
  if (overrideAllowed(policy, name) || annotated.trim() === fallback.raw?.trim()) {
    return { raw: annotated, source: "annotation" };
  }
  return {
    ...fallback,
    problem: {
      field: definition.annotation,
      message: `the cluster policy does not allow pods to override "${name}" (policy allowOverrides)`,
    },
  };
}

/** What a pod asks for, with the annotation to blame for each item. */
export interface PolicyRequest {
  providers: { value: ProviderName; field: string }[];
  vaultAddresses: { value: string; field: string }[];
  vaultRole?: { value: string; field: string } | undefined;
  azureVaults: { value: string; field: string }[];
}

/** Checks a request against the namespace's rule; each problem names the rule. */
export function namespaceRuleProblems(
  policy: Policy,
  namespace: string,
  request: PolicyRequest,
): Problem[] {
  const matched = namespaceRuleFor(policy, namespace);
  if (matched === undefined) return [];
  const { rule } = matched;
  const problems: Problem[] = [];
  const check = (
    items: { value: string; field: string }[],
    allowed: readonly string[] | undefined,
    what: string,
    glob: boolean,
  ): void => {
    if (allowed === undefined) return;
    const seen = new Set<string>();
    for (const item of items) {
      if (seen.has(`${item.field}\n${item.value}`)) continue;
      seen.add(`${item.field}\n${item.value}`);
      const ok = allowed.some((a) => (glob ? globMatches(a, item.value) : a === item.value));
      if (!ok) {
        problems.push({
          field: item.field,
          message: `${describeRule(matched)} allows ${what} [${allowed.join(", ")}], not "${item.value}"`,
        });
      }
    }
  };
  check(request.providers, rule.allowedProviders, "providers", false);
  check(request.vaultAddresses, rule.allowedVaultAddresses, "Vault addresses", false);
  check(request.vaultRole ? [request.vaultRole] : [], rule.allowedVaultRoles, "Vault roles", true);
  check(request.azureVaults, rule.allowedAzureVaults, "Azure vaults", false);
  return problems;
}
