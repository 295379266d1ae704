#!/usr/bin/env bash
# Provision the real third-party servers that DSO's end-to-end tests run against.
#
#   test/e2e/provision.sh              build/fetch what is missing, write $CACHE/env.sh,
#                                      print `export ...` lines on stdout (progress goes to stderr)
#   eval "$(test/e2e/provision.sh)"    ... and load them into the current shell
#   test/e2e/provision.sh --only helm  only that component (kubernetes, openbao, helm; comma-separated);
#                                      `npm test` uses it for the chart tests
#   test/e2e/provision.sh --env        only print the export lines of an already provisioned cache
#   test/e2e/provision.sh --regen-wrappers
#                                      maintainer mode: rewrite test/e2e/wrappers/*/go.mod+go.sum
#                                      from the pins below (needs the Go module proxy)
#
# Everything lands OUTSIDE the repository, in
#   ${DSO_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dso-e2e}/<name>-<version>/
# keyed by version (plus a recipe hash), so a second run, or a fresh clone on the same
# machine, reuses it at once. A per-cache flock serialises concurrent runs.
# Nothing here downloads a prebuilt binary: Go programs are compiled from the Go module
# proxy through the wrapper modules in test/e2e/wrappers/ (go.mod + go.sum pinned, so
# every module is checked against go.sum), PostgreSQL and openssl come from Debian, the
# Lowkey Vault jar from Maven Central.
#
# Knobs: DSO_E2E_CACHE (cache dir), DSO_E2E_PARALLEL=0|1 (default: 1 if >= 8 GiB free),
#        DSO_E2E_SKIP_LOWKEY=1, DSO_E2E_REQUIRE_LOWKEY=1 (fail instead of warn if the jar
#        cannot be had), DSO_E2E_PRUNE_GO=1 (delete the Go build and module caches
#        after a build: ~8 GB; the binaries stay).
set -euo pipefail

# ------------------------------------------------------------------ version pins
K8S_VERSION=v1.34.4            # kube-apiserver, kube-controller-manager, kubectl (k8s.io/kubernetes)
K8S_STAGING_VERSION=v0.34.4    # k8s.io/{api,client-go,...} replacing the staging/ folders
ETCD_VERSION=v3.6.4            # go.etcd.io/etcd/server/v3: the version k8s.io/kubernetes $K8S_VERSION pins; built in the same `go build`
HELM_VERSION=v3.19.5           # helm.sh/helm/v3/cmd/helm
OPENBAO_VERSION=2.4.0          # OpenBao release (Vault HTTP API)
OPENBAO_COMMIT=f9407a27fbee    # the v2.4.0 release commit
OPENBAO_MODULE_VERSION=v0.0.0-20250828202315-f9407a27fbee  # its pseudo-version (v2 tags lack a /v2 module path)
OPENBAO_API_VERSION=v2.4.0     # github.com/openbao/openbao/api/v2 at that release
OPENBAO_SDK_VERSION=v2.4.0     # github.com/openbao/openbao/sdk/v2 at that release
LOWKEY_VERSION=3.4.33          # com.github.nagyesta.lowkey-vault:lowkey-vault-app (Azure Key Vault fake; Java 17)
MIN_GO=1.24.6                  # oldest Go that builds all of the above (OpenBao's go directive)
RECIPE=1                       # bump to force a rebuild with unchanged versions
# Debian packages: postgresql (initdb/pg_ctl/postgres, and psql through postgresql-client-NN), openssl
APT_PACKAGES=(postgresql openssl)

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WRAPPERS="$HERE/wrappers"
CACHE="${DSO_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dso-e2e}"
K8S_DIR="$CACHE/kubernetes-$K8S_VERSION"
HELM_DIR="$CACHE/helm-$HELM_VERSION"
BAO_DIR="$CACHE/openbao-v$OPENBAO_VERSION"
LOWKEY_DIR="$CACHE/lowkey-vault-$LOWKEY_VERSION"
LOWKEY_JAR="$LOWKEY_DIR/lowkey-vault-app-$LOWKEY_VERSION.jar"
LOGS="$CACHE/logs"

log() { printf '[provision] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now() { date +%s; }
fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# ------------------------------------------------------------------ Go environment
go_env() {
  command -v go >/dev/null || die "go not found on PATH (need Go >= $MIN_GO)"
  local have
  have="$(GOTOOLCHAIN=local go env GOVERSION)"; have="${have#go}"
  if [[ "$(printf '%s\n%s\n' "$MIN_GO" "$have" | sort -V | head -1)" != "$MIN_GO" ]]; then
    die "Go $have is too old, need >= $MIN_GO"
  fi
  export GOTOOLCHAIN=local                 # never fetch a toolchain
  export GOMODCACHE="$CACHE/go/mod"        # module downloads shared by all wrappers
  export GOCACHE="$CACHE/go/build"         # compile cache shared by all wrappers
  export GOFLAGS="-mod=readonly -buildvcs=false"
  export CGO_ENABLED=0
  unset GOOS GOARCH GOWORK || true
  export GOWORK=off
}

# A hash of everything that decides what a component's build produces.
recipe_of() { # name extra-string
  { echo "recipe=$RECIPE go=$(go env GOVERSION) $2"; cat "$WRAPPERS/$1"/go.mod "$WRAPPERS/$1"/go.sum; } | sha256sum | cut -c1-16
}

is_provisioned() { # dir recipe
  [[ -f "$1/.provisioned" && "$(cat "$1/.provisioned")" == "$2" ]]
}

# build_go NAME VERSION DEST WRAPPER_NAME "LDFLAGS" PKG...  (runs in a background subshell)
build_go() {
  local name=$1 version=$2 dest=$3 wrapper=$4 ldflags=$5; shift 5
  local work="$CACHE/src/$name-$version" tmp="$dest.partial"
  rm -rf "$work" "$tmp"; mkdir -p "$work" "$tmp/bin"
  cp -r "$WRAPPERS/$wrapper/." "$work/"
  (
    cd "$work"
    echo "# $(date -u +%FT%TZ) go build in $work"
    nice -n 10 go build -ldflags "$ldflags" -o "$tmp/bin/" "$@"
  ) >"$LOGS/$name.log" 2>&1
}

# ------------------------------------------------------------------ Debian packages
apt_ensure() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  [[ $(id -u) == 0 ]] || die "missing Debian packages: ${missing[*]} (run: sudo apt-get install -y ${missing[*]})"
  log "installing Debian packages: ${missing[*]}"
  if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$LOGS/apt.log" 2>&1; then
    tail -n 20 "$LOGS/apt.log" >&2; die "apt-get install ${missing[*]} failed"
  fi
}

pg_bindir() {
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
  [[ -n "$d" && -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" ]] || return 1
  echo "$d"
}

# ------------------------------------------------------------------ Lowkey Vault (Maven Central)
fetch_lowkey() {
  [[ "${DSO_E2E_SKIP_LOWKEY:-0}" == 1 ]] && { log "lowkey-vault: skipped (DSO_E2E_SKIP_LOWKEY=1)"; return 0; }
  [[ -s "$LOWKEY_JAR" ]] && { log "lowkey-vault $LOWKEY_VERSION: cached"; return 0; }
  local miss="$LOWKEY_DIR.unavailable"
  # Remember a miss for a day so warm runs stay instant.
  if [[ -f "$miss" && -z "$(find "$miss" -mmin +1440 2>/dev/null)" && "${DSO_E2E_REQUIRE_LOWKEY:-0}" != 1 ]]; then
    log "lowkey-vault $LOWKEY_VERSION: not available (cached miss from $(date -r "$miss" -u +%FT%TZ); rm $miss to retry)"
    return 0
  fi
  command -v mvn >/dev/null || { log "WARNING: mvn not found; no Lowkey Vault"; return 0; }
  log "fetching lowkey-vault-app $LOWKEY_VERSION from Maven Central"
  local tmp="$LOWKEY_DIR.partial"; rm -rf "$tmp"; mkdir -p "$tmp"
  if mvn -B -q -U org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy \
      -Dartifact="com.github.nagyesta.lowkey-vault:lowkey-vault-app:$LOWKEY_VERSION:jar" \
      -DoutputDirectory="$tmp" >"$LOGS/lowkey.log" 2>&1 && [[ -s "$tmp/lowkey-vault-app-$LOWKEY_VERSION.jar" ]]; then
    rm -rf "$LOWKEY_DIR"; mv "$tmp" "$LOWKEY_DIR"; rm -f "$miss"
    log "lowkey-vault $LOWKEY_VERSION: $LOWKEY_JAR"
  else
    rm -rf "$tmp"; touch "$miss"
    local msg="lowkey-vault-app $LOWKEY_VERSION is not on this machine's Maven Central (see $LOGS/lowkey.log); DSO_E2E_LOWKEY_JAR stays empty"
    [[ "${DSO_E2E_REQUIRE_LOWKEY:-0}" == 1 ]] && die "$msg"
    log "WARNING: $msg"
  fi
}

# ------------------------------------------------------------------ env.sh
env_lines() {
  local pgbin java lowkey=""
  pgbin="$(pg_bindir || true)"
  java="$(command -v java || true)"; [[ -n "$java" ]] && java="$(readlink -f "$java")"
  [[ -s "$LOWKEY_JAR" ]] && lowkey="$LOWKEY_JAR"
  cat <<EOF
export DSO_E2E_CACHE='$CACHE'
export DSO_E2E_K8S_VERSION='$K8S_VERSION'
export DSO_E2E_ETCD='$K8S_DIR/bin/etcd'
export DSO_E2E_KUBE_APISERVER='$K8S_DIR/bin/kube-apiserver'
export DSO_E2E_KUBE_CONTROLLER_MANAGER='$K8S_DIR/bin/kube-controller-manager'
export DSO_E2E_KUBECTL='$K8S_DIR/bin/kubectl'
export DSO_E2E_HELM='$HELM_DIR/bin/helm'
export DSO_E2E_BAO='$BAO_DIR/bin/bao'
export DSO_E2E_LOWKEY_JAR='$lowkey'
export DSO_E2E_JAVA='$java'
export DSO_E2E_PG_BIN='$pgbin'
export DSO_E2E_PG_RUN_AS='$([[ $(id -u) == 0 ]] && echo postgres || true)'
export DSO_E2E_OPENSSL='$(command -v openssl || true)'
EOF
}

write_env() {
  env_lines >"$CACHE/env.sh.tmp"
  mv "$CACHE/env.sh.tmp" "$CACHE/env.sh"
}

# ------------------------------------------------------------------ maintainer: regenerate wrappers
regen_wrappers() {
  export GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false" GOWORK=off
  export GOMODCACHE="$CACHE/go/mod"
  # The module mirror here lacks sumdb entries for a few go-kms-wrapping modules.
  export GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}github.com/openbao/go-kms-wrapping"
  local d m staging="api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
    cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api cri-client
    csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms kube-aggregator
    kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics mount-utils pod-security-admission
    sample-apiserver sample-cli-plugin sample-controller"
  d="$WRAPPERS/kubernetes"; mkdir -p "$d"; rm -f "$d/go.sum"
  {
    printf 'module dso.local/k8s-wrapper\n\ngo 1.24.0\n\nrequire k8s.io/kubernetes %s\n\n' "$K8S_VERSION"
    printf '// k8s.io/kubernetes replaces its staging modules with ./staging/src/...; use the published ones.\nreplace (\n'
    for m in $staging; do printf '\tk8s.io/%s => k8s.io/%s %s\n' "$m" "$m" "$K8S_STAGING_VERSION"; done
    printf ')\n\ntool (\n\tgo.etcd.io/etcd/server/v3\n\tk8s.io/kubernetes/cmd/kube-apiserver\n'
    printf '\tk8s.io/kubernetes/cmd/kube-controller-manager\n\tk8s.io/kubernetes/cmd/kubectl\n)\n'
  } >"$d/go.mod"
  (cd "$d" && go mod tidy)
  grep -q "go.etcd.io/etcd/server/v3 $ETCD_VERSION" "$d/go.mod" ||
    log "WARNING: k8s $K8S_VERSION pins etcd $(grep 'go.etcd.io/etcd/server/v3 ' "$d/go.mod"), update ETCD_VERSION"

  d="$WRAPPERS/helm"; mkdir -p "$d"; rm -f "$d/go.sum"
  printf 'module dso.local/helm-wrapper\n\ngo 1.24.0\n\nrequire helm.sh/helm/v3 %s\n\ntool helm.sh/helm/v3/cmd/helm\n' "$HELM_VERSION" >"$d/go.mod"
  (cd "$d" && go mod tidy)

  d="$WRAPPERS/openbao"; mkdir -p "$d"; rm -f "$d/go.sum"
  # openbao's go.mod replaces api/v2, sdk/v2 and api/auth/* with local folders; require the
  # published modules of the same release instead. approle/userpass are not imported by the
  # bao binary but are in openbao's require list and not served here: stub them out.
  for m in approle userpass; do
    mkdir -p "$d/stub/$m"
    printf 'module github.com/openbao/openbao/api/auth/%s/v2\n\ngo 1.22\n' "$m" >"$d/stub/$m/go.mod"
  done
  cat >"$d/go.mod" <<EOF
module dso.local/bao-wrapper

go 1.24.6

require (
	github.com/openbao/openbao $OPENBAO_MODULE_VERSION
	github.com/openbao/openbao/api/v2 $OPENBAO_API_VERSION
	github.com/openbao/openbao/sdk/v2 $OPENBAO_SDK_VERSION
	github.com/openbao/openbao/api/auth/approle/v2 v2.0.0
	github.com/openbao/openbao/api/auth/userpass/v2 v2.0.0
	github.com/openbao/openbao/api/auth/kubernetes/v2 v2.0.1
)

tool github.com/openbao/openbao

replace github.com/openbao/openbao/api/auth/approle/v2 => ./stub/approle

replace github.com/openbao/openbao/api/auth/userpass/v2 => ./stub/userpass
EOF
  # -e: tests of dependencies import modules the mirror does not serve; the build does not need them.
  (cd "$d" && go mod tidy -e && go list -deps github.com/openbao/openbao >/dev/null)
  log "wrappers regenerated under $WRAPPERS; review and commit go.mod/go.sum"
}

# ------------------------------------------------------------------ main
main() {
  local mode="${1:-}" only=""
  mkdir -p "$CACHE" "$LOGS"
  case "$mode" in
    --env) env_lines; return 0 ;;
    --regen-wrappers) regen_wrappers; return 0 ;;
    # `npm test` needs only helm (chart tests); it should not pay for the servers' builds.
    --only) only="${2:-}"; [[ -n "$only" ]] || die "--only needs a component: kubernetes, openbao or helm" ;;
    "") ;;
    *) die "unknown argument: $mode" ;;
  esac
  wanted() { [[ -z "$only" || " ${only//,/ } " == *" $1 "* ]]; }

  exec 9>"$CACHE/.lock"
  if ! flock -n 9; then
    log "another provision run holds $CACHE/.lock; waiting"
    flock 9
  fi
  local t0; t0=$(now)
  log "cache: $CACHE"

  if [[ -z "$only" ]]; then
    apt_ensure "${APT_PACKAGES[@]}"
    pg_bindir >/dev/null || die "PostgreSQL binaries not found under /usr/lib/postgresql/*/bin"
    command -v openssl >/dev/null || die "openssl not found"
    command -v java >/dev/null || log "WARNING: java not found (Lowkey Vault needs Java 17)"
  fi

  go_env
  local ld_k8s="-s -w" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld_k8s+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=$(cut -d. -f1 <<<"${K8S_VERSION#v}")"
    ld_k8s+=" -X $p.gitMinor=$(cut -d. -f2 <<<"$K8S_VERSION") -X $p.gitTreeState=clean"
    ld_k8s+=" -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  local ld_helm="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  local ld_bao="-s -w -X github.com/openbao/openbao/version.fullVersion=$OPENBAO_VERSION -X github.com/openbao/openbao/version.GitCommit=$OPENBAO_COMMIT"

  grep -q "k8s.io/kubernetes $K8S_VERSION" "$WRAPPERS/kubernetes/go.mod" || die "wrappers/kubernetes/go.mod is not at $K8S_VERSION: run $0 --regen-wrappers"
  grep -q "go.etcd.io/etcd/server/v3 $ETCD_VERSION" "$WRAPPERS/kubernetes/go.mod" || die "wrappers/kubernetes/go.mod has no etcd $ETCD_VERSION: run $0 --regen-wrappers"
  grep -q "helm.sh/helm/v3 $HELM_VERSION" "$WRAPPERS/helm/go.mod" || die "wrappers/helm/go.mod is not at $HELM_VERSION: run $0 --regen-wrappers"
  grep -q "github.com/openbao/openbao $OPENBAO_MODULE_VERSION" "$WRAPPERS/openbao/go.mod" || die "wrappers/openbao/go.mod is not at $OPENBAO_MODULE_VERSION: run $0 --regen-wrappers"

  # name|version|dest|wrapper|ldflags|cold estimate|packages
  local specs=(
    "kubernetes|$K8S_VERSION|$K8S_DIR|kubernetes|$ld_k8s|~12-17 min|k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl go.etcd.io/etcd/server/v3"
    "openbao|v$OPENBAO_VERSION|$BAO_DIR|openbao|$ld_bao|~9-14 min|github.com/openbao/openbao"
    "helm|$HELM_VERSION|$HELM_DIR|helm|$ld_helm|~3-6 min|helm.sh/helm/v3/cmd/helm"
  )
  local parallel="${DSO_E2E_PARALLEL:-}"
  if [[ -z "$parallel" ]]; then
    local avail_kb; avail_kb=$(awk '/MemAvailable/{print $2}' /proc/meminfo)
    parallel=$((avail_kb >= 8 * 1024 * 1024 ? 1 : 0))
  fi

  local -a pids=() names=() starts=() dests=() recipes=() done_=()
  local spec name version dest wrapper ld est pkgs recipe i rc failed=0
  finish() { # index: collect one finished build
    local i=$1 rc=0
    wait "${pids[$i]}" || rc=$?
    done_[i]=1
    local dest="${dests[$i]}" b
    if ((rc == 0)); then
      # go build names binaries after the package path: .../server/v3 -> server, openbao -> openbao
      [[ -f "$dest.partial/bin/server" ]] && mv "$dest.partial/bin/server" "$dest.partial/bin/etcd"
      [[ -f "$dest.partial/bin/openbao" ]] && mv "$dest.partial/bin/openbao" "$dest.partial/bin/bao"
      echo "${recipes[$i]}" >"$dest.partial/.provisioned"
      rm -rf "$dest"; mv "$dest.partial" "$dest"
      b="$(cd "$dest/bin" && echo *)"
      log "built ${names[$i]} in $(fmt_secs $(($(now) - starts[i]))): $dest/bin/ $b"
    else
      failed=1
      log "FAILED: ${names[$i]} (exit $rc); last lines of $LOGS/${names[$i]}.log:"
      tail -n 40 "$LOGS/${names[$i]}.log" >&2 || true
    fi
  }
  for spec in "${specs[@]}"; do
    IFS='|' read -r name version dest wrapper ld est pkgs <<<"$spec"
    wanted "$name" || continue
    recipe="$(recipe_of "$wrapper" "$ld $pkgs")"
    if is_provisioned "$dest" "$recipe"; then
      log "$name $version: cached ($dest)"
      continue
    fi
    log "building $name $version (cold: $est on 2 cores beside the other builds; log: $LOGS/$name.log)"
    # shellcheck disable=SC2086
    build_go "$name" "$version" "$dest" "$wrapper" "$ld" $pkgs &
    pids+=($!); names+=("$name"); starts+=("$(now)"); dests+=("$dest"); recipes+=("$recipe"); done_+=(0)
    if [[ "$parallel" != 1 ]]; then finish $((${#pids[@]} - 1)); fi
  done

  # Lowkey while the compilers run.
  [[ -n "$only" ]] || fetch_lowkey

  # Heartbeat until every build has finished; report each one as it ends.
  local running last_beat; last_beat=$(now)
  while :; do
    running=""
    for i in "${!pids[@]}"; do
      ((done_[i])) && continue
      if kill -0 "${pids[$i]}" 2>/dev/null; then
        running+="${running:+, }${names[$i]} $(fmt_secs $(($(now) - starts[i])))"
      else
        finish "$i"
      fi
    done
    [[ -z "$running" ]] && break
    if (($(now) - last_beat >= 60)); then log "still building: $running"; last_beat=$(now); fi
    sleep 2
  done
  ((failed == 0)) || die "build failed"
  if ((${#pids[@]} > 0)) && [[ "${DSO_E2E_PRUNE_GO:-0}" == 1 ]]; then
    log "pruning Go build and module caches (DSO_E2E_PRUNE_GO=1)"
    go clean -cache; go clean -modcache
  fi

  write_env
  log "ready in $(fmt_secs $(($(now) - t0))); source $CACHE/env.sh (also printed on stdout)"
  cat "$CACHE/env.sh"
}

main "$@"
