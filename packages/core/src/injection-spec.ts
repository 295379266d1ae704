/**
 * Step one of the mutation: a pod's annotations and the policy resolved into an InjectionSpec,
 * or every problem found on the way. No pod is built here (that is mutate.ts).
 */
import type { Container, Pod } from "./kubernetes-types.js";
import type {
  AzureConfig,
  OnChangeAction,
  ProviderName,
  SecretSpec,
  VaultConfig,
} from "./agent-config.js";
import {
  AZURE_CLIENT_ID_ANNOTATION,
  AZURE_TENANT_ID_ANNOTATION,
  AZURE_VAULT_ANNOTATION,
  CONTAINERS_ANNOTATION,
  INJECT_ANNOTATION,
  MOUNT_PATH_ANNOTATION,
  ON_CHANGE_ANNOTATION,
  SA_CLIENT_ID_ANNOTATION,
  SA_TENANT_ID_ANNOTATION,
  SECRET_ANNOTATION_PREFIX,
  SETTINGS,
  TEMPLATE_ANNOTATION_PREFIX,
  VAULT_ADDRESS_ANNOTATION,
  VAULT_ROLE_ANNOTATION,
  checkFileName,
  unknownAnnotationProblems,
  type InjectionMode,
  type SettingValue,
} from "./annotations.js";
import {
  AGENT_CONTAINER_NAMES,
  AGENT_RESERVED_DIRS,
  AGENT_VOLUME_NAMES,
  APPROLE_ROLE_ID_FILE,
  APPROLE_SECRET_ID_FILE,
  AZURE_DEFAULT_AUTHORITY_HOST,
  VAULT_CA_FILE,
} from "./agent-paths.js";
import { DEFAULT_AGENT_CPU_REQUEST } from "./agent-containers.js";
import { didYouMean } from "./nearest-name.js";
import {
  injectionDisabledProblem,
  namespaceRuleProblems,
  resolveSetting,
  type PolicyRequest,
} from "./policy.js";
import { SETTING_NAMES, type Policy, type SettingName } from "./policy-types.js";
import type { Problem } from "./problems.js";
import { parseSecretRef } from "./references.js";
import { parseTemplate } from "./template.js";

export interface MutationContext {
  /** The namespace from the AdmissionReview request (pods from Deployments carry none). */
  namespace: string;
  policy: Policy;
  /** Annotations of the pod's service account, when the webhook may read them (policy readServiceAccounts). */
  serviceAccountAnnotations?: Readonly<Record<string, string>> | undefined;
}

/** Everything needed to build the injected pod. */
export interface InjectionSpec {
  mode: InjectionMode;
  mountPath: string;
  refreshSeconds: number;
  /** Containers (regular or init) that mount the files read-only. */
  containers: string[];
  onChange?: OnChangeAction;
  secrets: SecretSpec[];
  vault?: {
    config: VaultConfig;
    /** Audience of the projected token; absent for AppRole, which uses no token. */
    audience?: string;
    caConfigMap?: string;
    appRoleSecret?: string;
  };
  azure?: { config: AzureConfig; needsToken: boolean };
  agentCpu: string;
  agentMemory?: string;
  namespace: string;
  serviceAccount: string;
  /** UID of the agent when it must signal an application process (same UID, no capabilities). */
  signalUser?: number;
}

export type ResolvedInjection =
  { ok: true; spec: InjectionSpec } | { ok: false; problems: Problem[] };

type Values = { [N in SettingName]?: SettingValue<N> };

function readSettings(
  policy: Policy,
  annotations: Readonly<Record<string, string>>,
  problems: Problem[],
): Values {
  const values: Record<string, unknown> = {};
  for (const name of SETTING_NAMES) {
    const resolved = resolveSetting(policy, annotations, name);
    if (resolved.problem) problems.push(resolved.problem);
    if (resolved.raw === undefined) continue;
    const parsed = SETTINGS[name].parse(resolved.raw);
    const field =
      resolved.source === "annotation" ? SETTINGS[name].annotation : `policy defaults.${name}`;
    if (!parsed.ok) {
      problems.push({ field, message: parsed.message });
      continue;
    }
    values[name] = parsed.value;
  }
  return values;
}

function isNativeSidecar(container: Container): boolean {
  return container.restartPolicy === "Always";
}

/** Resolves a pod's annotations against the policy; see mutatePod for the overall contract. */
export function resolveInjection(pod: Pod, ctx: MutationContext): ResolvedInjection {
  const annotations = pod.metadata?.annotations ?? {};
  const disabled = injectionDisabledProblem(ctx.policy, ctx.namespace);
  if (disabled) return { ok: false, problems: [disabled] };

  const problems: Problem[] = [...unknownAnnotationProblems(annotations)];
  const values = readSettings(ctx.policy, annotations, problems);
  const containers = pod.spec?.containers ?? [];
  const initContainers = pod.spec?.initContainers ?? [];

  // Leftovers of an injection without the marker would clash with what we add.
  for (const c of [...containers, ...initContainers]) {
    if (AGENT_CONTAINER_NAMES.includes(c.name)) {
      problems.push({
        field: "spec",
        message: `already has a container named "${c.name}", which DSO reserves for its agent`,
      });
    }
  }
  for (const v of pod.spec?.volumes ?? []) {
    if (AGENT_VOLUME_NAMES.includes(v.name)) {
      problems.push({
        field: "spec.volumes",
        message: `already has a volume named "${v.name}", which DSO reserves for its agent`,
      });
    }
  }

  // Secrets and templates.
  const secrets: SecretSpec[] = [];
  const secretFields = new Map<string, string>();
  for (const key of Object.keys(annotations).sort()) {
    if (!key.startsWith(SECRET_ANNOTATION_PREFIX)) continue;
    const file = checkFileName(key.slice(SECRET_ANNOTATION_PREFIX.length));
    if (!file.ok) {
      problems.push({ field: key, message: file.message });
      continue;
    }
    const ref = parseSecretRef(annotations[key] ?? "", {
      field: key,
      defaultProvider: values.provider,
    });
    if (!ref.ok) {
      problems.push(ref.problem);
      continue;
    }
    secrets.push({ file: file.value, ref: ref.ref });
    secretFields.set(file.value, key);
  }
  for (const key of Object.keys(annotations).sort()) {
    if (!key.startsWith(TEMPLATE_ANNOTATION_PREFIX)) continue;
    const fileName = key.slice(TEMPLATE_ANNOTATION_PREFIX.length);
    const file = checkFileName(fileName);
    if (!file.ok) {
      problems.push({ field: key, message: file.message });
      continue;
    }
    const template = annotations[key] ?? "";
    const checked = parseTemplate(template);
    if (!checked.ok) problems.push({ field: key, message: checked.message });
    const secret = secrets.find((s) => s.file === file.value);
    if (secret === undefined) {
      if (!Object.hasOwn(annotations, SECRET_ANNOTATION_PREFIX + fileName)) {
        problems.push({
          field: key,
          message: `has no matching ${SECRET_ANNOTATION_PREFIX}${fileName}: a template renders the secret of the same file name`,
        });
      }
      continue;
    }
    if (checked.ok) secret.template = template;
  }
  const anySecretAnnotation = Object.keys(annotations).some((k) =>
    k.startsWith(SECRET_ANNOTATION_PREFIX),
  );
  if (!anySecretAnnotation) {
    problems.push({
      field: INJECT_ANNOTATION,
      message: `nothing to inject: add at least one ${SECRET_ANNOTATION_PREFIX}<file> annotation`,
    });
  }

  // Which containers mount the files.
  const knownNames = [...containers, ...initContainers].map((c) => c.name);
  let selected: string[];
  if (values.containers === undefined) {
    selected = containers.map((c) => c.name);
  } else {
    selected = [];
    for (const name of values.containers) {
      if (knownNames.includes(name) && !AGENT_CONTAINER_NAMES.includes(name)) selected.push(name);
      else {
        problems.push({
          field: CONTAINERS_ANNOTATION,
          message: `names container "${name}", which the pod does not have${didYouMean(name, knownNames)}; it has: ${knownNames.join(", ")}`,
        });
      }
    }
  }

  // The mount path must not collide with anything a selected container or the agent already mounts.
  const mountPath = values["mount-path"] ?? "/var/run/secrets/dso";
  const overlaps = (a: string, b: string): boolean =>
    a === b || a.startsWith(`${b}/`) || b.startsWith(`${a}/`);
  for (const c of [...containers, ...initContainers]) {
    if (!selected.includes(c.name)) continue;
    for (const mount of c.volumeMounts ?? []) {
      const existing = mount.mountPath.replace(/\/+$/, "") || "/";
      if (existing !== "/" && overlaps(mountPath, existing)) {
        problems.push({
          field: MOUNT_PATH_ANNOTATION,
          message: `"${mountPath}" clashes with ${existing} (volume ${mount.name}) in container "${c.name}": choose another directory`,
        });
      }
    }
  }
  for (const dir of AGENT_RESERVED_DIRS) {
    if (overlaps(mountPath, dir)) {
      problems.push({
        field: MOUNT_PATH_ANNOTATION,
        message: `"${mountPath}" clashes with ${dir}, which the DSO agent uses: choose another directory`,
      });
    }
  }

  const mode = values.mode ?? "init-and-sidecar";
  const onChange = values["on-change"];
  let signalUser: number | undefined;
  if (onChange !== undefined) {
    if (mode === "init-only") {
      problems.push({
        field: ON_CHANGE_ANNOTATION,
        message: `has no effect with dso.io/mode: init-only (there is no sidecar to notice changes)`,
      });
    }
    if (onChange.kind === "signal") {
      const targets = [...containers, ...initContainers.filter(isNativeSidecar)];
      const target = targets.find((c) => c.name === onChange.container);
      if (target === undefined) {
        const names = targets.map((c) => c.name);
        problems.push({
          field: ON_CHANGE_ANNOTATION,
          message: `signals container "${onChange.container}", which the pod does not have${didYouMean(onChange.container, names)}; it has: ${names.join(", ")}`,
        });
      } else {
        // Without capabilities a process may only signal processes of its own UID.
        const uid = target.securityContext?.runAsUser ?? pod.spec?.securityContext?.runAsUser;
        if (uid === 0) {
          problems.push({
            field: ON_CHANGE_ANNOTATION,
            message: `container "${onChange.container}" runs as root, which the non-root agent cannot signal; run it as a non-root user or use an http on-change`,
          });
        } else if (uid !== undefined) signalUser = uid;
      }
    }
  }

  // Providers.
  const providers = new Set<ProviderName>(secrets.map((s) => s.ref.provider));
  const request: PolicyRequest = { providers: [], vaultAddresses: [], azureVaults: [] };
  for (const provider of providers) {
    const first = secrets.find((s) => s.ref.provider === provider);
    request.providers.push({ value: provider, field: secretFields.get(first?.file ?? "") ?? "" });
  }

  const spec: InjectionSpec = {
    mode,
    mountPath,
    refreshSeconds: values.refresh ?? 300,
    containers: selected,
    secrets,
    agentCpu: values["agent-cpu"] ?? DEFAULT_AGENT_CPU_REQUEST,
    namespace: ctx.namespace,
    serviceAccount: pod.spec?.serviceAccountName ?? "default",
  };
  if (onChange !== undefined) spec.onChange = onChange;
  if (values["agent-memory"] !== undefined) spec.agentMemory = values["agent-memory"];
  if (signalUser !== undefined) spec.signalUser = signalUser;

  if (providers.has("vault")) {
    const vaultSecrets = secrets
      .filter((s) => s.ref.provider === "vault")
      .map((s) => secretFields.get(s.file));
    const addresses = values["vault-address"];
    const method = values["vault-auth-method"] ?? "kubernetes";
    const role = values["vault-role"];
    if (addresses === undefined) {
      problems.push({
        field: VAULT_ADDRESS_ANNOTATION,
        message: `is required for Vault references (${vaultSecrets.join(", ")}): set it, e.g. https://vault.example.com:8200, or ask for a policy default`,
      });
    } else {
      for (const value of addresses)
        request.vaultAddresses.push({ value, field: VAULT_ADDRESS_ANNOTATION });
    }
    if (role === undefined) {
      problems.push({
        field: VAULT_ROLE_ANNOTATION,
        message:
          method === "approle"
            ? "is required with approle auth: name the Kubernetes Secret holding role-id and secret-id"
            : `is required with ${method} auth: name the Vault role bound to service account "${spec.serviceAccount}"`,
      });
    } else {
      request.vaultRole = { value: role, field: VAULT_ROLE_ANNOTATION };
      if (method === "approle" && !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(role)) {
        problems.push({
          field: VAULT_ROLE_ANNOTATION,
          message: `"${role}" is not a Secret name; with approle auth it names the Kubernetes Secret holding role-id and secret-id`,
        });
      }
    }
    const config: VaultConfig = {
      addresses: addresses ?? [],
      authMethod: method,
      authPath: values["vault-auth-path"] ?? "auth/kubernetes",
      revokeOnShutdown: ctx.policy.agent.revokeOnShutdown,
    };
    const vault: NonNullable<InjectionSpec["vault"]> = { config };
    if (method === "approle") {
      config.roleIdFile = APPROLE_ROLE_ID_FILE;
      config.secretIdFile = APPROLE_SECRET_ID_FILE;
      if (role !== undefined) vault.appRoleSecret = role;
    } else {
      if (role !== undefined) config.role = role;
      vault.audience = values["vault-audience"] ?? "vault";
    }
    if (values["vault-namespace"] !== undefined) config.namespace = values["vault-namespace"];
    if (values["vault-ca-configmap"] !== undefined) {
      config.caFile = VAULT_CA_FILE;
      vault.caConfigMap = values["vault-ca-configmap"];
    }
    spec.vault = vault;
  }

  if (providers.has("azure")) {
    const auth = values["azure-auth"] ?? "workload-identity";
    const defaultVault = values["azure-vault"];
    for (const s of secrets) {
      if (s.ref.provider !== "azure") continue;
      const field = secretFields.get(s.file) ?? "";
      if (s.ref.vaultUrl !== undefined) request.azureVaults.push({ value: s.ref.vaultUrl, field });
      else if (defaultVault !== undefined)
        request.azureVaults.push({ value: defaultVault, field: AZURE_VAULT_ANNOTATION });
      else {
        problems.push({
          field: AZURE_VAULT_ANNOTATION,
          message: `is required because ${field} names no vault: set it to the vault's name or URL, or write a full https://<vault>.vault.azure.net/secrets/<name> reference`,
        });
      }
    }
    const sa = ctx.serviceAccountAnnotations ?? {};
    const clientId = values["azure-client-id"] ?? sa[SA_CLIENT_ID_ANNOTATION]?.trim();
    const tenantId = values["azure-tenant-id"] ?? sa[SA_TENANT_ID_ANNOTATION]?.trim();
    const config: AzureConfig = { auth };
    if (defaultVault !== undefined) config.vaultUrl = defaultVault;
    if (clientId !== undefined && clientId !== "") config.clientId = clientId;
    if (tenantId !== undefined && tenantId !== "") config.tenantId = tenantId;
    const needsToken = auth !== "managed-identity";
    if (needsToken) config.authorityHost = AZURE_DEFAULT_AUTHORITY_HOST;
    if (auth === "workload-identity") {
      if (config.clientId === undefined) {
        problems.push({
          field: AZURE_CLIENT_ID_ANNOTATION,
          message: `is required with workload identity: set the managed identity's or app registration's client ID (or the service account's ${SA_CLIENT_ID_ANNOTATION} annotation, if the policy lets DSO read service accounts)`,
        });
      }
      if (config.tenantId === undefined) {
        problems.push({
          field: AZURE_TENANT_ID_ANNOTATION,
          message: "is required with workload identity: set your Microsoft Entra tenant ID",
        });
      }
    }
    spec.azure = { config, needsToken };
  }

  problems.push(...namespaceRuleProblems(ctx.policy, ctx.namespace, request));
  return problems.length > 0 ? { ok: false, problems } : { ok: true, spec };
}
