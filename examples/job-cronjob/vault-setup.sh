#!/usr/bin/env bash
# Vault/OpenBao side of examples/job-cronjob: a KV v2 secret with the data warehouse login, a
# read-only policy and a Kubernetes auth role "reports" bound to the service account
# reports/reports (audience "vault").
#
#   export VAULT_ADDR=https://vault.example.com:8200 VAULT_TOKEN=...
#   ./vault-setup.sh < warehouse-password.txt        # VAULT_CLI=bao for OpenBao
#
# The Kubernetes auth method must already be enabled and configured
# (examples/vault-kv/vault-setup.sh does it).
set -euo pipefail

vault() { command "${VAULT_CLI:-vault}" "$@"; }

if [[ "$(vault secrets list -format=json)" != *'"secret/"'* ]]; then
  vault secrets enable -path=secret -version=2 kv
fi

# The password comes from stdin ("-"), never from argv.
vault kv put -mount=secret reports/warehouse \
  host=warehouse.reports.svc port=5432 username=reports password=-

vault policy write reports - <<'HCL'
path "secret/data/reports/warehouse" {
  capabilities = ["read"]
}
HCL

# Short tokens: a Job's pods live minutes to hours.
vault write auth/kubernetes/role/reports \
  bound_service_account_names=reports \
  bound_service_account_namespaces=reports \
  audience=vault \
  token_policies=reports \
  token_ttl=30m \
  token_max_ttl=12h
