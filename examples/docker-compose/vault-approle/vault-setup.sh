#!/usr/bin/env bash
# Vault/OpenBao side of examples/docker-compose/vault-approle: the KV v2 secret and policy of
# examples/vault-kv, an AppRole role "orders-api-compose", and its role_id and secret_id written
# to ./role-id and ./secret-id (mode 0400) for Compose's Docker secrets.
#
#   export VAULT_ADDR=https://vault.example.com:8200 VAULT_TOKEN=...
#   cd examples/docker-compose/vault-approle && ./vault-setup.sh     # VAULT_CLI=bao for OpenBao
set -euo pipefail

vault() { command "${VAULT_CLI:-vault}" "$@"; }

if [[ "$(vault auth list -format=json)" != *'"approle/"'* ]]; then
  vault auth enable approle
fi
if [[ "$(vault secrets list -format=json)" != *'"secret/"'* ]]; then
  vault secrets enable -path=secret -version=2 kv
fi

# The secret, unless it exists already (examples/vault-kv creates the same one).
if ! vault kv get -mount=secret orders/db >/dev/null 2>&1; then
  openssl rand -base64 24 | vault kv put -mount=secret orders/db username=orders password=-
fi

vault policy write orders-api - <<'HCL'
path "secret/data/orders/db" {
  capabilities = ["read"]
}
HCL

# The sidecar logs in again when its token reaches token_max_ttl, so the secret_id must stay
# usable: no use limit. Narrow it to the Docker host with secret_id_bound_cidrs where you can.
vault write auth/approle/role/orders-api-compose \
  token_policies=orders-api \
  token_ttl=1h \
  token_max_ttl=24h \
  secret_id_num_uses=0 \
  secret_id_ttl="${SECRET_ID_TTL:-0}"

umask 077
vault read -field=role_id auth/approle/role/orders-api-compose/role-id >role-id
vault write -f -field=secret_id auth/approle/role/orders-api-compose/secret-id >secret-id
echo "wrote ./role-id and ./secret-id (give them to UID 65532: sudo chown 65532 role-id secret-id)"
