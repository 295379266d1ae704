#!/usr/bin/env bash
# Vault/OpenBao side of examples/vault-kv: a KV v2 secret, a read-only policy, and a Kubernetes
# auth role bound to the service account orders/orders-api with audience "vault".
#
# Run with a token allowed to manage auth methods, policies and the KV mount:
#   export VAULT_ADDR=https://vault.example.com:8200 VAULT_TOKEN=...
#   ./vault-setup.sh                  # or VAULT_CLI=bao ./vault-setup.sh for OpenBao
#
# Vault must be able to call the cluster's TokenReview API. Inside the cluster (the Vault Helm
# chart) the defaults below are right; for a Vault outside the cluster, set KUBERNETES_HOST,
# KUBERNETES_CA_FILE and TOKEN_REVIEWER_JWT_FILE (a token of a service account bound to
# system:auth-delegator).
set -euo pipefail

vault() { command "${VAULT_CLI:-vault}" "$@"; }

KUBERNETES_HOST="${KUBERNETES_HOST:-https://kubernetes.default.svc}"

# 1. Kubernetes auth method (once per cluster).
if [[ "$(vault auth list -format=json)" != *'"kubernetes/"'* ]]; then
  vault auth enable kubernetes
fi
config_args=("kubernetes_host=${KUBERNETES_HOST}")
if [[ -n "${KUBERNETES_CA_FILE:-}" ]]; then
  config_args+=("kubernetes_ca_cert=@${KUBERNETES_CA_FILE}")
fi
if [[ -n "${TOKEN_REVIEWER_JWT_FILE:-}" ]]; then
  config_args+=("token_reviewer_jwt=@${TOKEN_REVIEWER_JWT_FILE}")
fi
vault write auth/kubernetes/config "${config_args[@]}"

# 2. KV v2 engine at secret/ (dev servers already have it).
if [[ "$(vault secrets list -format=json)" != *'"secret/"'* ]]; then
  vault secrets enable -path=secret -version=2 kv
fi

# 3. The secret. The password comes from stdin ("-"), so it never appears in argv or history.
openssl rand -base64 24 | vault kv put -mount=secret orders/db username=orders password=-

# 4. Policy: read exactly this secret (KV v2 API path: secret/data/...).
vault policy write orders-api - <<'HCL'
path "secret/data/orders/db" {
  capabilities = ["read"]
}
HCL

# 5. Role: only the service account orders/orders-api, only tokens minted for audience "vault"
#    (the DSO default, dso.io/vault-audience).
vault write auth/kubernetes/role/orders-api \
  bound_service_account_names=orders-api \
  bound_service_account_namespaces=orders \
  audience=vault \
  token_policies=orders-api \
  token_ttl=1h \
  token_max_ttl=24h
