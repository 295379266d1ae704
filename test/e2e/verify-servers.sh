#!/usr/bin/env bash
# Smoke test of the servers provision.sh built: starts each one on 127.0.0.1 with free ports
# in a throw-away directory, checks it the way the e2e harness will use it, and stops it.
# Doubles as the copy-pasteable reference for the harness (see README-infra-notes.md).
#
#   source "${DSO_E2E_CACHE:-$HOME/.cache/dso-e2e}/env.sh" && test/e2e/verify-servers.sh
#
# Exit 0 and a final "N passed, 0 failed" line when everything works. KEEP=1 leaves the
# servers running and prints how to reach them (stop them with the printed kill line).
set -euo pipefail

: "${DSO_E2E_ETCD:?source \$DSO_E2E_CACHE/env.sh first}"
T="$(mktemp -d /tmp/dso-e2e-verify.XXXXXX)"
chmod 755 "$T"                       # the postgres user must be able to traverse it
PIDS=()
PASS=0 FAIL=0
log() { printf '[verify] %s\n' "$*" >&2; }
ok() { PASS=$((PASS + 1)); log "ok: $*"; }
bad() { FAIL=$((FAIL + 1)); log "FAIL: $*"; }
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_for() { # seconds description command...
  local n=$1 what=$2; shift 2
  local t0=$EPOCHREALTIME deadline=$((SECONDS + n))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { log "timeout after ${n}s waiting for $what"; return 1; }
    sleep 0.2
  done
  log "$what up after $(python3 -c "print(round($EPOCHREALTIME-$t0,1))")s"
}
as_pg() { if [[ -n "${DSO_E2E_PG_RUN_AS:-}" ]]; then runuser -u "$DSO_E2E_PG_RUN_AS" -- "$@"; else "$@"; fi; }
cleanup() {
  if [[ "${KEEP:-0}" == 1 ]]; then
    log "KEEP=1: servers left running; stop with: kill ${PIDS[*]}; ${DSO_E2E_PG_RUN_AS:+runuser -u $DSO_E2E_PG_RUN_AS -- }$DSO_E2E_PG_BIN/pg_ctl -D $T/pg/data stop; rm -rf $T"
    return
  fi
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -d "$T/pg/data" ]] && as_pg "$DSO_E2E_PG_BIN/pg_ctl" -D "$T/pg/data" -m immediate -w stop >/dev/null 2>&1 || true
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$T"
}
trap cleanup EXIT

ETCD_PORT=$(free_port) ETCD_PEER=$(free_port) API_PORT=$(free_port) KCM_PORT=$(free_port)
BAO_PORT=$(free_port) PG_PORT=$(free_port)

# ---------------------------------------------------------------- etcd
"$DSO_E2E_ETCD" --name e2e --data-dir "$T/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
  --initial-cluster "e2e=http://127.0.0.1:$ETCD_PEER" \
  --unsafe-no-fsync --log-level=warn >"$T/etcd.log" 2>&1 &
PIDS+=($!)
if wait_for 30 etcd curl -fsS "http://127.0.0.1:$ETCD_PORT/health"; then
  ok "etcd $("$DSO_E2E_ETCD" --version | head -1): $(curl -fsS "http://127.0.0.1:$ETCD_PORT/health")"
else bad "etcd"; tail -20 "$T/etcd.log" >&2; exit 1; fi

# ---------------------------------------------------------------- certificates (openssl)
P="$T/pki"; mkdir -p "$P"
openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=dso-e2e-ca" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$P/ca.key" -out "$P/ca.crt" 2>/dev/null
sign() { # name subject extensions
  openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$P/$1.key" -out "$P/$1.csr" 2>/dev/null
  printf '%s\n' "$3" >"$P/$1.ext"
  openssl x509 -req -in "$P/$1.csr" -CA "$P/ca.crt" -CAkey "$P/ca.key" -CAcreateserial -days 365 \
    -extfile "$P/$1.ext" -out "$P/$1.crt" 2>/dev/null
}
sign apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.0.0.1"
sign admin "/O=system:masters/CN=dso-e2e-admin" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
openssl genrsa -out "$P/sa.key" 2048 2>/dev/null
openssl rsa -in "$P/sa.key" -pubout -out "$P/sa.pub" 2>/dev/null
ADMIN_TOKEN="$(openssl rand -hex 16)"
echo "$ADMIN_TOKEN,dso-e2e-admin,dso-e2e-admin,system:masters" >"$P/tokens.csv"
ok "pki generated"

# ---------------------------------------------------------------- kube-apiserver
"$DSO_E2E_KUBE_APISERVER" \
  --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
  --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" \
  --client-ca-file="$P/ca.crt" --token-auth-file="$P/tokens.csv" \
  --authorization-mode=RBAC \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
  --service-cluster-ip-range=10.0.0.0/24 --allow-privileged=true \
  --endpoint-reconciler-type=none --cert-dir="$T/apiserver-certs" \
  >"$T/apiserver.log" 2>&1 &
PIDS+=($!)
APIS="https://127.0.0.1:$API_PORT"
if wait_for 90 kube-apiserver curl -fsS --cacert "$P/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" "$APIS/readyz"; then
  ok "kube-apiserver /readyz (token): $(curl -fsS --cacert "$P/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" "$APIS/readyz")"
else bad "kube-apiserver"; tail -30 "$T/apiserver.log" >&2; exit 1; fi
if curl -fsS --cacert "$P/ca.crt" --cert "$P/admin.crt" --key "$P/admin.key" "$APIS/readyz" >/dev/null; then
  ok "kube-apiserver /readyz (client cert)"; else bad "kube-apiserver client cert"; fi

# kubeconfig (client cert, embedded)
K="$T/kubeconfig"
kc() { "$DSO_E2E_KUBECTL" --kubeconfig "$K" "$@"; }
kc config set-cluster e2e --server="$APIS" --certificate-authority="$P/ca.crt" --embed-certs=true >/dev/null
kc config set-credentials admin --client-certificate="$P/admin.crt" --client-key="$P/admin.key" --embed-certs=true >/dev/null
kc config set-context e2e --cluster=e2e --user=admin >/dev/null
kc config use-context e2e >/dev/null
if v="$(kc version -o json)"; then
  ok "kubectl version: client $(python3 -c 'import json,sys;d=json.load(sys.stdin);print(d["clientVersion"]["gitVersion"],"server",d["serverVersion"]["gitVersion"])' <<<"$v")"
else bad "kubectl version"; fi

# ---------------------------------------------------------------- kube-controller-manager
"$DSO_E2E_KUBE_CONTROLLER_MANAGER" \
  --kubeconfig="$K" --authentication-kubeconfig="$K" --authorization-kubeconfig="$K" \
  --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --leader-elect=false \
  --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" \
  --cluster-signing-cert-file="$P/ca.crt" --cluster-signing-key-file="$P/ca.key" \
  --use-service-account-credentials=true --controllers='*' \
  >"$T/kcm.log" 2>&1 &
PIDS+=($!)
if wait_for 60 "controller-manager /healthz" curl -fsSk "https://127.0.0.1:$KCM_PORT/healthz"; then
  ok "kube-controller-manager /healthz"; else bad "kube-controller-manager /healthz"; tail -20 "$T/kcm.log" >&2; fi
if wait_for 60 "default ServiceAccount" kc get serviceaccount default -n default; then
  ok "controller-manager created ServiceAccount default/default"; else bad "no default ServiceAccount"; fi
kc create deployment web --image=registry.invalid/web:1 -n default >/dev/null
if wait_for 60 ReplicaSet bash -c "[[ -n \"\$('$DSO_E2E_KUBECTL' --kubeconfig '$K' get rs -n default -l app=web -o name)\" ]]"; then
  ok "Deployment -> ReplicaSet -> Pod(s): $(kc get pods -n default -l app=web --no-headers | awk '{print $1, $3}' | head -1)"
else bad "deployment controller"; fi

# TokenRequest (what a pod's projected token is) + TokenReview
SA_TOKEN="$(kc create token default -n default --audience=vault --duration=10m)"
[[ "$SA_TOKEN" == ey* ]] && ok "TokenRequest via kubectl create token" || bad "TokenRequest"
raw="$(curl -fsS --cacert "$P/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \
  -X POST "$APIS/api/v1/namespaces/default/serviceaccounts/default/token" \
  -d '{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"audiences":["vault"],"expirationSeconds":600}}')"
python3 -c 'import json,sys;assert json.load(sys.stdin)["status"]["token"].startswith("ey")' <<<"$raw" && ok "TokenRequest via REST" || bad "TokenRequest REST"
review="$(kc create -o jsonpath='{.status.authenticated} {.status.user.username} {.status.audiences}' -f - <<EOF
{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"$SA_TOKEN","audiences":["vault"]}}
EOF
)"
[[ "$review" == "true system:serviceaccount:default:default"* ]] && ok "TokenReview: $review" || bad "TokenReview: $review"

# server-side dry run of a pod (admission chain runs, nothing stored)
if kc run dry --image=registry.invalid/x:1 -n default --dry-run=server -o name >/dev/null; then
  ok "pod create --dry-run=server"; else bad "dry-run=server"; fi

# A mutating webhook on loopback, registered by URL (no service network): a tiny python
# HTTPS server that adds a label, exactly the path the DSO webhook will take.
WH_PORT=$(free_port)
sign webhook "/CN=127.0.0.1" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost"
cat >"$T/webhook.py" <<'EOF'
import base64, json, ssl, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        patch = [{"op": "add", "path": "/metadata/labels", "value": {"dso-verify": "mutated"}}]
        body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {
            "uid": review["request"]["uid"], "allowed": True, "patchType": "JSONPatch",
            "patch": base64.b64encode(json.dumps(patch).encode()).decode()}}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
srv = HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[2], sys.argv[3])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
EOF
python3 "$T/webhook.py" "$WH_PORT" "$P/webhook.crt" "$P/webhook.key" >"$T/webhook.log" 2>&1 &
PIDS+=($!)
wait_for 10 "python webhook" curl -fsS --cacert "$P/ca.crt" -o /dev/null -X POST -d '{"request":{"uid":"x"}}' "https://127.0.0.1:$WH_PORT/mutate"
kc apply -f - >/dev/null <<EOF
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: dso-verify}
webhooks:
- name: verify.dso.local
  admissionReviewVersions: [v1]
  sideEffects: None            # dry-run requests only go to webhooks with sideEffects None/NoneOnDryRun
  failurePolicy: Fail
  timeoutSeconds: 5
  clientConfig:
    url: https://127.0.0.1:$WH_PORT/mutate
    caBundle: $(base64 -w0 <"$P/ca.crt")
  rules: [{operations: [CREATE], apiGroups: [""], apiVersions: [v1], resources: [pods]}]
  objectSelector: {matchLabels: {dso-verify: want}}
EOF
sleep 1   # the webhook configuration reaches the admission chain asynchronously
if [[ "$(kc run mutated --image=registry.invalid/x:1 -n default -l dso-verify=want --dry-run=server -o jsonpath='{.metadata.labels.dso-verify}')" == mutated ]]; then
  ok "URL-registered mutating webhook on 127.0.0.1 was called (dry-run=server shows the patch)"
else bad "mutating webhook by URL"; fi
kc delete mutatingwebhookconfiguration dso-verify >/dev/null

# ---------------------------------------------------------------- helm
if hv="$("$DSO_E2E_HELM" version --short)"; then ok "helm version $hv"; else bad "helm version"; fi
(cd "$T" && HOME="$T" "$DSO_E2E_HELM" create demo >/dev/null)
if HOME="$T" "$DSO_E2E_HELM" template demo "$T/demo" --kube-version "$(kc version -o json | python3 -c 'import json,sys;print(json.load(sys.stdin)["serverVersion"]["gitVersion"])')" >"$T/demo.yaml" &&
  kc apply --dry-run=server -n default -f "$T/demo.yaml" >/dev/null; then
  ok "helm template | kubectl apply --dry-run=server"; else bad "helm template + server dry-run"; fi

# ---------------------------------------------------------------- PostgreSQL
mkdir -p "$T/pg"
[[ -n "${DSO_E2E_PG_RUN_AS:-}" ]] && chown "$DSO_E2E_PG_RUN_AS:" "$T/pg"
as_pg "$DSO_E2E_PG_BIN/initdb" -D "$T/pg/data" -U postgres --auth=trust -E UTF8 --no-instructions >"$T/initdb.log" 2>&1
as_pg "$DSO_E2E_PG_BIN/pg_ctl" -D "$T/pg/data" -l "$T/pg/log" -w -t 30 \
  -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $T/pg -c fsync=off" start >/dev/null
if r="$(psql "postgresql://postgres@127.0.0.1:$PG_PORT/postgres" -tAc 'select version()')"; then
  ok "postgres: ${r%% on *}"; else bad "postgres"; fi
psql -q "postgresql://postgres@127.0.0.1:$PG_PORT/postgres" -c "alter user postgres password 'pgpass'"

# ---------------------------------------------------------------- OpenBao dev server
HOME="$T" "$DSO_E2E_BAO" server -dev -dev-root-token-id=root -dev-listen-address="127.0.0.1:$BAO_PORT" \
  >"$T/bao.log" 2>&1 &
PIDS+=($!)
BAO="http://127.0.0.1:$BAO_PORT"
if wait_for 30 bao curl -fsS "$BAO/v1/sys/health"; then
  ok "bao /v1/sys/health: $(curl -fsS "$BAO/v1/sys/health" | python3 -c 'import json,sys;d=json.load(sys.stdin);print(d["version"],"sealed="+str(d["sealed"]))')"
else bad "bao"; tail -20 "$T/bao.log" >&2; fi
bao_api() { # method path [json]
  curl -fsS -H "X-Vault-Token: root" -H 'Content-Type: application/json' -X "$1" "$BAO$2" ${3:+-d "$3"}
}
bao_api POST /v1/secret/data/app '{"data":{"password":"s3cret"}}' >/dev/null &&
  [[ "$(bao_api GET /v1/secret/data/app | python3 -c 'import json,sys;print(json.load(sys.stdin)["data"]["data"]["password"])')" == s3cret ]] &&
  ok "bao KV v2 write/read at secret/" || bad "bao kv"

# Kubernetes auth against the local kube-apiserver: reviewer = a SA bound to system:auth-delegator
kc create serviceaccount bao-reviewer -n default >/dev/null
kc create clusterrolebinding bao-reviewer --clusterrole=system:auth-delegator --serviceaccount=default:bao-reviewer >/dev/null
REVIEWER="$(kc create token bao-reviewer -n default --duration=1h)"
bao_api POST /v1/sys/auth/kubernetes '{"type":"kubernetes"}' >/dev/null
bao_api POST /v1/auth/kubernetes/config "$(python3 -c 'import json,sys;print(json.dumps({"kubernetes_host":sys.argv[1],"kubernetes_ca_cert":open(sys.argv[2]).read(),"token_reviewer_jwt":sys.argv[3],"disable_local_ca_jwt":True}))' "$APIS" "$P/ca.crt" "$REVIEWER")" >/dev/null
bao_api POST /v1/sys/policies/acl/app '{"policy":"path \"secret/data/app\" { capabilities = [\"read\"] }"}' >/dev/null
bao_api POST /v1/auth/kubernetes/role/app '{"bound_service_account_names":["default"],"bound_service_account_namespaces":["default"],"audience":"vault","token_policies":["app"],"token_ttl":"10m"}' >/dev/null
if login="$(curl -fsS -X POST "$BAO/v1/auth/kubernetes/login" -d "{\"role\":\"app\",\"jwt\":\"$SA_TOKEN\"}")"; then
  CT="$(python3 -c 'import json,sys;print(json.load(sys.stdin)["auth"]["client_token"])' <<<"$login")"
  [[ "$(curl -fsS -H "X-Vault-Token: $CT" "$BAO/v1/secret/data/app" | python3 -c 'import json,sys;print(json.load(sys.stdin)["data"]["data"]["password"])')" == s3cret ]] &&
    ok "bao kubernetes auth login with a TokenRequest token, then KV read" || bad "bao k8s-auth token read"
else bad "bao kubernetes auth login"; fi

# Database secrets engine against the PostgreSQL above
bao_api POST /v1/sys/mounts/database '{"type":"database"}' >/dev/null
bao_api POST /v1/database/config/pg "{\"plugin_name\":\"postgresql-database-plugin\",\"connection_url\":\"postgresql://{{username}}:{{password}}@127.0.0.1:$PG_PORT/postgres?sslmode=disable\",\"username\":\"postgres\",\"password\":\"pgpass\",\"allowed_roles\":[\"ro\"]}" >/dev/null
bao_api POST /v1/database/roles/ro '{"db_name":"pg","creation_statements":["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '"'"'{{password}}'"'"' VALID UNTIL '"'"'{{expiration}}'"'"';"],"default_ttl":"5m"}' >/dev/null
if creds="$(bao_api GET /v1/database/creds/ro)"; then
  U="$(python3 -c 'import json,sys;print(json.load(sys.stdin)["data"]["username"])' <<<"$creds")"
  [[ "$(psql "postgresql://postgres@127.0.0.1:$PG_PORT/postgres" -tAc "select count(*) from pg_roles where rolname='$U'")" == 1 ]] &&
    ok "bao database engine created PostgreSQL role $U" || bad "bao db role not in postgres"
else bad "bao database creds"; fi

# ---------------------------------------------------------------- Lowkey Vault
if [[ -n "${DSO_E2E_LOWKEY_JAR:-}" ]]; then
  LK_PORT=$(free_port) LK_TOKEN_PORT=$(free_port)
  "$DSO_E2E_JAVA" -jar "$DSO_E2E_LOWKEY_JAR" --server.address=127.0.0.1 --server.port="$LK_PORT" \
    --app.token.port="$LK_TOKEN_PORT" >"$T/lowkey.log" 2>&1 &
  PIDS+=($!)
  if wait_for 90 lowkey curl -fsSk "https://127.0.0.1:$LK_PORT/ping"; then ok "lowkey /ping"; else bad "lowkey /ping"; fi
  curl -fsS "http://127.0.0.1:$LK_TOKEN_PORT/metadata/identity/oauth2/token?resource=https://vault.azure.net" >/dev/null &&
    ok "lowkey token endpoint" || bad "lowkey token endpoint"
else
  log "skip: Lowkey Vault (DSO_E2E_LOWKEY_JAR empty: the jar is not obtainable here)"
fi

if [[ "${KEEP:-0}" == 1 ]]; then
  log "etcd http://127.0.0.1:$ETCD_PORT  apiserver $APIS (kubeconfig $K)  bao $BAO (token root)  postgres 127.0.0.1:$PG_PORT"
fi
echo "verify: $PASS passed, $FAIL failed"
((FAIL == 0))
