#!/usr/bin/env bash
# Vault/OpenBao side of examples/vault-dynamic-postgres: the database secrets engine connected to
# PostgreSQL, a role "inventory-api" that creates a short-lived login per pod, a policy allowing
# to read and renew those credentials, and a Kubernetes auth role bound to the service account
# inventory/inventory-api (audience "vault").
#
#   export VAULT_ADDR=https://vault.example.com:8200 VAULT_TOKEN=...
#   export PGHOST=postgres.inventory.svc PGDATABASE=inventory PGADMIN_USER=vault_admin
#   ./vault-setup.sh < pgadmin-password.txt     # the admin password on stdin, never in argv
#
# Set VAULT_CLI=bao for OpenBao. For a Vault outside the cluster also set KUBERNETES_HOST,
# KUBERNETES_CA_FILE and TOKEN_REVIEWER_JWT_FILE (see examples/vault-kv/vault-setup.sh).
set -euo pipefail

vault() { command "${VAULT_CLI:-vault}" "$@"; }

PGHOST="${PGHOST:-postgres.inventory.svc}"
PGPORT="${PGPORT:-5432}"
PGDATABASE="${PGDATABASE:-inventory}"
PGADMIN_USER="${PGADMIN_USER:-vault_admin}"
PGSSLMODE="${PGSSLMODE:-require}"
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

# 2. Database secrets engine.
if [[ "$(vault secrets list -format=json)" != *'"database/"'* ]]; then
  vault secrets enable database
fi

# 3. Connection to PostgreSQL. Vault logs in as PGADMIN_USER (a role with CREATEROLE that can
#    grant the privileges below); its password is read from stdin ("-").
vault write "database/config/${PGDATABASE}" \
  plugin_name=postgresql-database-plugin \
  connection_url="postgresql://{{username}}:{{password}}@${PGHOST}:${PGPORT}/${PGDATABASE}?sslmode=${PGSSLMODE}" \
  username="${PGADMIN_USER}" \
  password=- \
  allowed_roles=inventory-api \
  verify_connection="${VERIFY_CONNECTION:-true}"

# 4. The role: every read of database/creds/inventory-api creates a new login, valid for 1 hour
#    and renewable up to 24 hours. DSO's sidecar renews it at two thirds of the lease and reads a
#    new one before the max TTL.
vault write database/roles/inventory-api \
  db_name="${PGDATABASE}" \
  default_ttl=1h \
  max_ttl=24h \
  creation_statements=- <<'SQL'
CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{{name}}";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{{name}}";
SQL

# 5. Policy: read credentials of this role. Renewing leases (sys/leases/renew) is already in
#    Vault's default policy; revoking them is only needed with policy.agent.revokeOnShutdown.
vault policy write inventory-api - <<'HCL'
path "database/creds/inventory-api" {
  capabilities = ["read"]
}
path "sys/leases/revoke" {
  capabilities = ["update"]
}
HCL

# 6. Kubernetes auth role bound to the service account inventory/inventory-api.
vault write auth/kubernetes/role/inventory-api \
  bound_service_account_names=inventory-api \
  bound_service_account_namespaces=inventory \
  audience=vault \
  token_policies=inventory-api \
  token_ttl=1h \
  token_max_ttl=24h
