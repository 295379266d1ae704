#!/usr/bin/env bash
# Azure side of examples/azure-workload-identity, with the Azure CLI (az login first):
# a Key Vault using Azure RBAC, its secrets and certificate, a user-assigned managed identity, a
# federated credential that trusts the cluster's OIDC issuer for system:serviceaccount:orders:orders-api
# (audience api://AzureADTokenExchange), and the "Key Vault Secrets User" role on the vault.
#
#   RESOURCE_GROUP=orders-rg AKS_CLUSTER=orders-aks KEYVAULT_NAME=orders-kv-example ./azure-setup.sh
#
# On a cluster that is not AKS, set OIDC_ISSUER to its service-account issuer URL instead of
# AKS_CLUSTER (kubectl get --raw /.well-known/openid-configuration | jq -r .issuer); the issuer's
# discovery document and keys must be publicly reachable by Microsoft Entra ID.
set -euo pipefail

: "${RESOURCE_GROUP:?set RESOURCE_GROUP}"
: "${KEYVAULT_NAME:?set KEYVAULT_NAME (3-24 letters, digits and dashes, globally unique)}"
LOCATION="${LOCATION:-westeurope}"
IDENTITY_NAME="${IDENTITY_NAME:-orders-api}"
NAMESPACE="${NAMESPACE:-orders}"
SERVICE_ACCOUNT="${SERVICE_ACCOUNT:-orders-api}"
CERT_NAME="${CERT_NAME:-orders-api-tls}"

# 1. The cluster's OIDC issuer (AKS: enable it once; the workload identity add-on is not needed
#    by DSO, which projects the token and sets AZURE_* itself).
if [[ -z "${OIDC_ISSUER:-}" ]]; then
  : "${AKS_CLUSTER:?set AKS_CLUSTER (or OIDC_ISSUER for another cluster)}"
  az aks update --resource-group "$RESOURCE_GROUP" --name "$AKS_CLUSTER" --enable-oidc-issuer >/dev/null
  OIDC_ISSUER="$(az aks show --resource-group "$RESOURCE_GROUP" --name "$AKS_CLUSTER" \
    --query oidcIssuerProfile.issuerUrl --output tsv)"
fi

# 2. Key Vault with Azure RBAC authorization (role assignments instead of access policies).
if ! az keyvault show --name "$KEYVAULT_NAME" --output none 2>/dev/null; then
  az keyvault create --resource-group "$RESOURCE_GROUP" --name "$KEYVAULT_NAME" \
    --location "$LOCATION" --enable-rbac-authorization true --output none
fi
KEYVAULT_ID="$(az keyvault show --name "$KEYVAULT_NAME" --query id --output tsv)"
# You need "Key Vault Administrator" (or Secrets/Certificates Officer) on the vault to add content.
az role assignment create --assignee "$(az ad signed-in-user show --query id --output tsv)" \
  --role "Key Vault Administrator" --scope "$KEYVAULT_ID" --output none

# 3. Content. Values go through stdin (--file /dev/stdin), never through argv.
printf '%s' "$(openssl rand -base64 24)" |
  az keyvault secret set --vault-name "$KEYVAULT_NAME" --name db-password --file /dev/stdin --output none
printf '%s' "$(openssl rand -hex 24)" |
  az keyvault secret set --vault-name "$KEYVAULT_NAME" --name smtp-password --file /dev/stdin --output none
printf '%s' "sk_test_$(openssl rand -hex 24)" |
  az keyvault secret set --vault-name "$KEYVAULT_NAME" --name stripe-api-key --file /dev/stdin --output none
# A self-signed certificate with the default policy (PKCS#12); DSO writes PEM either way.
az keyvault certificate create --vault-name "$KEYVAULT_NAME" --name "$CERT_NAME" \
  --policy "$(az keyvault certificate get-default-policy)" --output none
# The version to pin in dso.io/secret-stripe-key (the last segment of the secret's id).
STRIPE_VERSION="$(az keyvault secret show --vault-name "$KEYVAULT_NAME" --name stripe-api-key \
  --query id --output tsv)"
STRIPE_VERSION="${STRIPE_VERSION##*/}"

# 4. The managed identity the pods act as.
az identity create --resource-group "$RESOURCE_GROUP" --name "$IDENTITY_NAME" \
  --location "$LOCATION" --output none
CLIENT_ID="$(az identity show --resource-group "$RESOURCE_GROUP" --name "$IDENTITY_NAME" \
  --query clientId --output tsv)"
PRINCIPAL_ID="$(az identity show --resource-group "$RESOURCE_GROUP" --name "$IDENTITY_NAME" \
  --query principalId --output tsv)"
TENANT_ID="$(az account show --query tenantId --output tsv)"

# 5. Federated credential: tokens of this service account, from this issuer, for this audience.
az identity federated-credential create --resource-group "$RESOURCE_GROUP" \
  --identity-name "$IDENTITY_NAME" --name "${NAMESPACE}-${SERVICE_ACCOUNT}" \
  --issuer "$OIDC_ISSUER" \
  --subject "system:serviceaccount:${NAMESPACE}:${SERVICE_ACCOUNT}" \
  --audiences api://AzureADTokenExchange --output none

# 6. Read access to secrets (certificates are read through their backing secret, so this role
#    covers them too). Assignments can take a few minutes to apply.
az role assignment create --assignee-object-id "$PRINCIPAL_ID" \
  --assignee-principal-type ServicePrincipal \
  --role "Key Vault Secrets User" --scope "$KEYVAULT_ID" --output none

echo "export CLIENT_ID=$CLIENT_ID TENANT_ID=$TENANT_ID STRIPE_VERSION=$STRIPE_VERSION KEYVAULT_NAME=$KEYVAULT_NAME"
