{{/*
Body of NOTES.txt, kept in a helper so the chart tests can render it with helm template
(helm template never prints NOTES.txt).
*/}}
{{- define "dso.notes" -}}
DSO {{ .Chart.AppVersion }} is installed in namespace {{ .Release.Namespace }} (release {{ .Release.Name }}).

Check the webhook:

  kubectl -n {{ .Release.Namespace }} rollout status deployment/{{ include "dso.fullname" . }}
  kubectl get mutatingwebhookconfiguration {{ include "dso.webhookConfigurationName" . }}

Next, annotate a workload (in any namespace except {{ (concat (list "kube-system" .Release.Namespace) .Values.webhook.excludeNamespaces) | uniq | join ", " }}).
This Deployment gets /var/run/secrets/dso/password from Vault; adjust the address, role and path:

apiVersion: apps/v1
kind: Deployment
metadata:
  name: demo
spec:
  selector:
    matchLabels: {app: demo}
  template:
    metadata:
      labels: {app: demo}
      annotations:
        dso.io/inject: "true"
        {{- if not (hasKey .Values.policy.defaults "provider") }}
        dso.io/provider: vault
        {{- end }}
        {{- if not (hasKey .Values.policy.defaults "vault-address") }}
        dso.io/vault-address: https://vault.vault.svc:8200
        {{- end }}
        dso.io/vault-role: demo
        dso.io/secret-password: secret/data/demo/db#password
    spec:
      containers:
        - name: app
          image: busybox:1.37
          command: ["sh", "-c", "while true; do ls -l /var/run/secrets/dso; sleep 60; done"]

Preview what the webhook will do without a cluster:  npx dso inject -f deployment.yaml
Every annotation is described in docs/annotations.md; the policy in docs/policy.md.
{{- $warnings := list }}
{{- if and (eq .Values.webhook.failurePolicy "Ignore") (not .Values.validatingAdmissionPolicy.enabled) }}
{{- $warnings = append $warnings "webhook.failurePolicy is Ignore and validatingAdmissionPolicy.enabled is false: while the webhook is down, annotated pods start WITHOUT their secrets. Enable the ValidatingAdmissionPolicy or use failurePolicy Fail." }}
{{- end }}
{{- if and (eq .Values.webhook.failurePolicy "Fail") (lt (int .Values.replicaCount) 2) }}
{{- $warnings = append $warnings "replicaCount is 1 with failurePolicy Fail: while that replica restarts or its node drains, annotated pods cannot be created (no PodDisruptionBudget is rendered for one replica). Use 2 or more replicas." }}
{{- end }}
{{- if eq .Values.certificates.mode "self-signed" }}
{{- $warnings = append $warnings (printf "certificates.mode is self-signed: the webhook writes caBundle into the MutatingWebhookConfiguration %s, which Argo CD and Flux report as drift. Add the ignore rule for /webhooks/*/clientConfig/caBundle (docs/install.md), or use certificates.mode helm or cert-manager. The Secret %s is created by the webhook and is not removed by helm uninstall." (include "dso.webhookConfigurationName" .) (include "dso.selfSignedSecretName" .)) }}
{{- end }}
{{- if .Values.policy.readServiceAccounts }}
{{- $warnings = append $warnings "policy.readServiceAccounts is true: the webhook can list and watch ServiceAccounts in every namespace (a ClusterRole). Leave it off unless pods rely on the azure.workload.identity/client-id annotation of their ServiceAccount." }}
{{- end }}
{{- if not .Values.validatingAdmissionPolicy.enabled }}
{{- $warnings = append $warnings "validatingAdmissionPolicy.enabled is false: nothing stops an annotated pod that the webhook did not inject." }}
{{- else if not (has "Deny" .Values.validatingAdmissionPolicy.validationActions) }}
{{- $warnings = append $warnings "validatingAdmissionPolicy.validationActions has no Deny: uninjected pods are reported but still admitted." }}
{{- end }}
{{- if .Values.webhook.url }}
{{- $warnings = append $warnings (printf "webhook.url is set: the API server calls %s, not the Service in this release." .Values.webhook.url) }}
{{- end }}
{{- if $warnings }}

WARNINGS:
{{- range $warnings }}
  - {{ . }}
{{- end }}
{{- end }}
{{- end -}}
