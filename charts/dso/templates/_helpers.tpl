{{/*
Names. Kubernetes names and label values are limited to 63 characters, so every name is truncated
and stripped of a trailing dash; suffixed names truncate the base first so the suffix survives.
*/}}

{{- define "dso.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "dso.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "<fullname>-<suffix>" within 63 characters. Call with (dict "ctx" $ "suffix" "tls"). */}}
{{- define "dso.suffixedName" -}}
{{- $suffix := printf "-%s" .suffix -}}
{{- $base := include "dso.fullname" .ctx | trunc (int (sub 63 (len $suffix))) | trimSuffix "-" -}}
{{- printf "%s%s" $base $suffix -}}
{{- end -}}

{{- define "dso.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "dso.serviceName" -}}
{{- include "dso.fullname" . -}}
{{- end -}}

{{- define "dso.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "dso.fullname" .) .Values.serviceAccount.name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "dso.webhookConfigurationName" -}}
{{- default (include "dso.fullname" .) .Values.webhook.configurationName | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "dso.policyConfigMapName" -}}
{{- include "dso.suffixedName" (dict "ctx" . "suffix" "policy") -}}
{{- end -}}

{{/* Secret holding the serving certificate in helm and cert-manager modes. */}}
{{- define "dso.tlsSecretName" -}}
{{- include "dso.suffixedName" (dict "ctx" . "suffix" "tls") -}}
{{- end -}}

{{/* Secret the webhook creates and shares between replicas in self-signed mode. */}}
{{- define "dso.selfSignedSecretName" -}}
{{- default (include "dso.suffixedName" (dict "ctx" . "suffix" "bootstrap-tls")) .Values.certificates.selfSigned.secretName -}}
{{- end -}}

{{- define "dso.validatingAdmissionPolicyName" -}}
{{- include "dso.suffixedName" (dict "ctx" . "suffix" "require-injection") -}}
{{- end -}}

{{- define "dso.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "dso.agentImage" -}}
{{- default (printf "ghcr.io/dso-project/dso-agent:%s" .Chart.AppVersion) .Values.policy.agent.image -}}
{{- end -}}

{{/* Labels. */}}
{{- define "dso.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dso.name" . }}
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/component: webhook
{{- end -}}

{{- define "dso.labels" -}}
helm.sh/chart: {{ include "dso.chart" . }}
{{ include "dso.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dso
{{- end -}}

{{/*
Whether the webhook talks to the Kubernetes API at all: only to bootstrap its certificate
(self-signed mode) or to read service accounts. Otherwise it gets no token and no egress.
*/}}
{{- define "dso.needsApiAccess" -}}
{{- if or (eq .Values.certificates.mode "self-signed") .Values.policy.readServiceAccounts -}}true{{- end -}}
{{- end -}}

{{/*
Namespaces neither the webhook nor the safety net ever sees: kube-system (the control plane must
never depend on DSO) and the release's own namespace (the webhook must never depend on itself).
*/}}
{{- define "dso.namespaceSelector" -}}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values:
      {{- range (concat (list "kube-system" .Release.Namespace) .Values.webhook.excludeNamespaces) | uniq }}
      - {{ . | quote }}
      {{- end }}
{{- end -}}

{{/*
The serving certificate of helm mode as a dict with "ca", "cert", "key" (PEM) and "generated".
Reuses the Secret already in the cluster (upgrade), otherwise generates a CA and a certificate
(install). Memoized in .Values so the Secret and the webhook configuration's caBundle, rendered by
different templates, get the same data.
*/}}
{{- define "dso.helmCertificate" -}}
{{- if not (hasKey .Values "__dsoGeneratedTLS") -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "dso.tlsSecretName" .) -}}
{{- $tls := include "dso.helmCertificateFor" (dict "ctx" . "existing" $existing) | fromJson -}}
{{- $_ := set .Values "__dsoGeneratedTLS" $tls -}}
{{- end -}}
{{- toJson (get .Values "__dsoGeneratedTLS") -}}
{{- end -}}

{{/*
The reuse-or-generate decision, apart from `lookup` so the chart tests can hand it an existing
Secret. Call with (dict "ctx" $ "existing" <Secret or empty dict>). A Secret missing any of
ca.crt, tls.crt, tls.key is not reused: the webhook needs all three.
*/}}
{{- define "dso.helmCertificateFor" -}}
{{- $ctx := .ctx -}}
{{- $data := dict -}}
{{- if and .existing .existing.data -}}
{{- $data = .existing.data -}}
{{- end -}}
{{- if and (hasKey $data "ca.crt") (hasKey $data "tls.crt") (hasKey $data "tls.key") -}}
{{- toJson (dict "ca" (index $data "ca.crt" | b64dec) "cert" (index $data "tls.crt" | b64dec) "key" (index $data "tls.key" | b64dec) "generated" false) -}}
{{- else -}}
{{- $svc := include "dso.serviceName" $ctx -}}
{{- $ns := $ctx.Release.Namespace -}}
{{- $days := int $ctx.Values.certificates.helm.validityDays -}}
{{- $ca := genCA (printf "%s-ca" (include "dso.fullname" $ctx)) $days -}}
{{- $dns := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) -}}
{{- $cert := genSignedCert (printf "%s.%s.svc" $svc $ns) nil $dns $days $ca -}}
{{- toJson (dict "ca" $ca.Cert "cert" $cert.Cert "key" $cert.Key "generated" true) -}}
{{- end -}}
{{- end -}}

{{/* caBundle for the webhook configuration, base64; empty when something else provides it. */}}
{{- define "dso.caBundle" -}}
{{- if and .Values.webhook.url .Values.webhook.caBundle -}}
{{- .Values.webhook.caBundle -}}
{{- else if eq .Values.certificates.mode "helm" -}}
{{- (include "dso.helmCertificate" . | fromJson).ca | b64enc -}}
{{- end -}}
{{- end -}}

{{/*
One place for every rule the schema cannot express. All messages are collected and reported
together, so the operator fixes everything in one round.
*/}}
{{- define "dso.validateValues" -}}
{{- $messages := list -}}
{{- $mode := .Values.certificates.mode -}}
{{- with .Values.webhook.url -}}
{{- if not (hasPrefix "https://" .) -}}
{{- $messages = append $messages (printf "webhook.url: %q must start with https:// (the API server only calls webhooks over TLS)" .) -}}
{{- end -}}
{{- if eq $mode "cert-manager" -}}
{{- $messages = append $messages "webhook.url: cannot be used with certificates.mode cert-manager, whose certificate names the Service; use certificates.mode helm with webhook.caBundle, or self-signed" -}}
{{- else if and (eq $mode "helm") (not $.Values.webhook.caBundle) -}}
{{- $messages = append $messages "webhook.caBundle: required with webhook.url when certificates.mode is \"helm\" (the chart's certificate names the Service, not the URL's host)" -}}
{{- end -}}
{{- end -}}
{{- with .Values.webhook.caBundle -}}
{{- if not (contains "-----BEGIN CERTIFICATE-----" (b64dec .)) -}}
{{- $messages = append $messages "webhook.caBundle: must be a base64-encoded PEM certificate bundle (base64 -w0 ca.crt)" -}}
{{- end -}}
{{- if not $.Values.webhook.url -}}
{{- $messages = append $messages "webhook.caBundle: only applies with webhook.url; for the in-cluster Service the CA comes from certificates.mode" -}}
{{- end -}}
{{- end -}}
{{- $fileMode := .Values.policy.agent.fileMode -}}
{{- if and (regexMatch "^0?[0-7]{3}$" $fileMode) (not (hasSuffix "0" $fileMode)) -}}
{{- $messages = append $messages (printf "policy.agent.fileMode: %q grants access to other users; the last digit must be 0 (for example \"0440\")" $fileMode) -}}
{{- end -}}
{{- if and (regexMatch "^0?[0-7]{3}$" $fileMode) (not (regexMatch "[4-7][0-7]$" $fileMode)) -}}
{{- $messages = append $messages (printf "policy.agent.fileMode: %q does not let the group read, so application containers could not read the files (for example \"0440\")" $fileMode) -}}
{{- end -}}
{{- $seen := dict -}}
{{- /* The first matching rule applies, so a rule after a repeated pattern or a catch-all is dead. */ -}}
{{- range $i, $rule := .Values.policy.namespaces -}}
{{- if hasKey $seen "*" -}}
{{- $messages = append $messages (printf "policy.namespaces[%d]: never applies, because policy.namespaces[%s] before it matches every namespace (\"*\"); put the catch-all rule last" $i (get $seen "*")) -}}
{{- else -}}
{{- range $rule.match -}}
{{- if hasKey $seen . -}}
{{- $messages = append $messages (printf "policy.namespaces[%d].match: %q is already matched by policy.namespaces[%s], so this entry never applies" $i . (get $seen .)) -}}
{{- else -}}
{{- $_ := set $seen . (toString $i) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and (has "*" .Values.policy.allowOverrides) (gt (len .Values.policy.allowOverrides) 1) -}}
{{- $messages = append $messages "policy.allowOverrides: \"*\" already allows every setting; list either \"*\" alone or the allowed settings" -}}
{{- end -}}
{{- $actions := .Values.validatingAdmissionPolicy.validationActions -}}
{{- if and (has "Deny" $actions) (has "Warn" $actions) -}}
{{- $messages = append $messages "validatingAdmissionPolicy.validationActions: Deny and Warn cannot be combined (Kubernetes rejects the binding); use [Deny] or [Warn, Audit]" -}}
{{- end -}}
{{- if and .Values.podDisruptionBudget.enabled (gt (int .Values.replicaCount) 1) (ge (int .Values.podDisruptionBudget.minAvailable) (int .Values.replicaCount)) -}}
{{- $messages = append $messages (printf "podDisruptionBudget.minAvailable: %d must be less than replicaCount (%d), or node drains block forever" (int .Values.podDisruptionBudget.minAvailable) (int .Values.replicaCount)) -}}
{{- end -}}
{{- if $messages -}}
{{- printf "\n\nINVALID VALUES:\n- %s\n" (join "\n- " $messages) | fail -}}
{{- end -}}
{{- end -}}
