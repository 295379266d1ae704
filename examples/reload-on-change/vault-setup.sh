#!/usr/bin/env bash
# Vault/OpenBao side of examples/reload-on-change: two KV v2 secrets (the catalog app's settings,
# and a TLS certificate and key for nginx), a policy and a Kubernetes auth role for each of the
# service accounts web/catalog and web/edge (audience "vault").
#
#   export VAULT_ADDR=https://vault.example.com:8200 VAULT_TOKEN=...
#   ./vault-setup.sh                     # VAULT_CLI=bao for OpenBao
#
# The Kubernetes auth method must already be enabled and configured
# (examples/vault-kv/vault-setup.sh does it). Needs openssl for the self-signed certificate.
set -euo pipefail

vault() { command "${VAULT_CLI:-vault}" "$@"; }

if [[ "$(vault secrets list -format=json)" != *'"secret/"'* ]]; then
  vault secrets enable -path=secret -version=2 kv
fi

# The catalog app's settings; the whole entry is written as config.json.
vault kv put -mount=secret web/catalog-config \
  greeting="Welcome to the catalog" page_size=50 checkout_v2=false

# A certificate for nginx. Rerun this part (or store a real certificate) to see nginx reload.
workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj "/CN=edge.web.svc" -addext "subjectAltName=DNS:edge.web.svc,DNS:localhost" \
  -keyout "$workdir/tls.key" -out "$workdir/tls.crt" 2>/dev/null
vault kv put -mount=secret web/edge-tls \
  certificate=@"$workdir/tls.crt" private_key=@"$workdir/tls.key"

# One policy and role per application, each reading only its own secret.
vault policy write web-catalog - <<'HCL'
path "secret/data/web/catalog-config" {
  capabilities = ["read"]
}
HCL
vault write auth/kubernetes/role/web-catalog \
  bound_service_account_names=catalog bound_service_account_namespaces=web \
  audience=vault token_policies=web-catalog token_ttl=1h token_max_ttl=24h

vault policy write web-edge - <<'HCL'
path "secret/data/web/edge-tls" {
  capabilities = ["read"]
}
HCL
vault write auth/kubernetes/role/web-edge \
  bound_service_account_names=edge bound_service_account_namespaces=web \
  audience=vault token_policies=web-edge token_ttl=1h token_max_ttl=24h
