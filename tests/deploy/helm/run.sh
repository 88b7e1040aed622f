#!/usr/bin/env bash
# The Helm chart (deploy/helm/shop-fleet) with real tools, no cluster: helm lint
# --strict and helm template with the default values and with values-alt.yaml, then
# every rendered manifest decoded strictly into the Kubernetes API types and checked
# by k8scheck/ (its rules are at the top of k8scheck/main.go) and the mutual TLS by
# check_tls.py (certificates per program signed by the chart's CA, each mounted by its
# program alone), and a self-test that
# the checker refuses broken manifests. CTest test_deploy_helm; `make helm-test`.
#
#   tests/deploy/helm/run.sh [PROGRAM_BINARY...]
#
# With the binaries (every program of deploy/fleet.conf), each container's variables
# are checked against its program's --help. helm (from the Go module proxy) and the
# checker are built once into ${XDG_CACHE_HOME:-$HOME/.cache}/shop-fleet/tools.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
CHART=$ROOT/deploy/helm/shop-fleet
HELM_VERSION=v4.3.2
TOOLS=${XDG_CACHE_HOME:-$HOME/.cache}/shop-fleet/tools
HELM=$TOOLS/helm
CHECK=$TOOLS/k8scheck
mkdir -p "$TOOLS"
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false

step() { printf '== %s\n' "$*"; }

# ---- tools ----
# The module version of the binary (helm's own `version` says only v4.3 when built by go install).
helm_module_version() { go version -m "$HELM" 2>/dev/null | awk '$1 == "mod" && $2 == "helm.sh/helm/v4" {print $3}'; }
if [[ ! -x $HELM ]] || [[ $(helm_module_version) != "$HELM_VERSION" ]]; then
    step "building helm $HELM_VERSION from the Go module proxy (minutes, once)"
    start=$SECONDS
    (cd "$TOOLS" && GOBIN=$TOOLS go install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION")
    step "helm built in $((SECONDS - start))s"
fi
sum=$(cat "$HERE/k8scheck/go.mod" "$HERE/k8scheck/go.sum" "$HERE"/k8scheck/*.go | sha256sum | cut -d' ' -f1)
if [[ ! -x $CHECK ]] || [[ $(cat "$CHECK.sum" 2>/dev/null) != "$sum" ]]; then
    step "building k8scheck"
    (cd "$HERE/k8scheck" && go build -mod=readonly -o "$CHECK" .)
    echo "$sum" > "$CHECK.sum"
fi
step "helm $(helm_module_version) ($HELM), k8scheck ($CHECK)"

programs=()
for bin in "$@"; do programs+=(-program "$bin"); done
[[ $# -gt 0 ]] || echo "note: no program binaries given: variables are not checked against --help"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
passed=0

# ---- lint and render ----
# name, values file ('' = defaults), checker flags
render() {
    local name=$1 values=$2; shift 2
    local args=(--namespace shop)
    [[ -n $values ]] && args+=(-f "$values")
    step "$name: helm lint --strict"
    "$HELM" lint --strict "${args[@]}" "$CHART"
    step "$name: helm template"
    "$HELM" template shop "$CHART" "${args[@]}" > "$WORK/$name.yaml"
    # NOTES.txt is rendered by install only: a client-side dry run, no cluster.
    "$HELM" install shop "$CHART" "${args[@]}" --dry-run=client > "$WORK/$name.install"
    grep -q '^NOTES:' "$WORK/$name.install" || { echo "FAIL: $name: no NOTES rendered"; exit 1; }
    step "$name: k8scheck"
    "$CHECK" "$@" "${programs[@]}" "$WORK/$name.yaml"
    step "$name: mutual TLS (check_tls.py)"
    python3 "$HERE/check_tls.py" "$WORK/$name.yaml" shop "$DOMAIN"
    passed=$((passed + 1))
}
DOMAIN=cluster.local render defaults "" -require-hpa
DOMAIN=cluster.example render alt "$HERE/values-alt.yaml"

# The chart refuses to create a Secret it has no values for.
step "chart: secret.create without secret values must fail"
if "$HELM" template shop "$CHART" --set secret.create=true > /dev/null 2> "$WORK/err"; then
    echo "FAIL: helm template rendered a Secret without secret.values.jwtSecret"; exit 1
fi
grep -q 'secret.values.jwtSecret is required' "$WORK/err" || { cat "$WORK/err"; exit 1; }
# values.schema.json refuses a misspelt value instead of ignoring it.
step "chart: a misspelt value must fail"
if "$HELM" template shop "$CHART" --set order.replicas=3 > /dev/null 2> "$WORK/err"; then
    echo "FAIL: helm template accepted the unknown value order.replicas"; exit 1
fi
grep -q "additional properties 'replicas' not allowed" "$WORK/err" || { cat "$WORK/err"; exit 1; }

# ---- the checker is strict: each broken copy of the default rendering must fail ----
# name | sed expression (first match only) | text the failure must contain
negatives=(
    "unknown field|0,/^  revisionHistoryLimit:/s//  revisionHistoryLimt:/|unknown field \"spec.revisionHistoryLimt\""
    "field in the wrong case|0,/containerPort:/s//ContainerPort:/|unknown field"
    "duplicate field|0,/^  revisionHistoryLimit: 5$/s//  revisionHistoryLimit: 5\n  revisionHistoryLimit: 6/|already set in map"
    "wrong type|0,/^  revisionHistoryLimit: 5$/s//  revisionHistoryLimit: five/|does not decode"
    "unknown kind|\$a---\napiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w|unexpected apiVersion/kind"
    "old API version|0,/^apiVersion: autoscaling\/v2$/s//apiVersion: autoscaling\/v1/|unexpected apiVersion/kind"
    "writable root filesystem|0,/readOnlyRootFilesystem: true/s//readOnlyRootFilesystem: false/|readOnlyRootFilesystem is not true"
    "gRPC Service not headless|0,/^  clusterIP: None$/s//  type: ClusterIP/|must be headless"
)
if [[ ${#programs[@]} -gt 0 ]]; then
    negatives+=(
        "variable the program does not read|0,/^  SAGA_TIMEOUT:/s//  SAGA_TIMEOUTS:/|which order-svc --help does not list"
        "value out of range|0,/^  DB_POOL_SIZE: \"8\"/s//  DB_POOL_SIZE: \"99\"/|not an integer in 1..64"
    )
fi
for neg in "${negatives[@]}"; do
    IFS='|' read -r name expr want <<< "$neg"
    sed -e "$expr" "$WORK/defaults.yaml" > "$WORK/broken.yaml"
    if cmp -s "$WORK/defaults.yaml" "$WORK/broken.yaml"; then
        echo "FAIL: self-test '$name': the edit changed nothing (the rendering moved?)"; exit 1
    fi
    if "$CHECK" -require-hpa "${programs[@]}" "$WORK/broken.yaml" > "$WORK/out" 2>&1; then
        echo "FAIL: self-test '$name': k8scheck accepted a broken manifest"; exit 1
    fi
    if ! grep -qF -- "$want" "$WORK/out"; then
        echo "FAIL: self-test '$name': k8scheck failed, but not with '$want':"; cat "$WORK/out"; exit 1
    fi
    echo "   self-test '$name': refused as expected"
done
# A container without limits (a rule, not a decoding error): drop the first limits block.
awk '/^            limits:/ && !done {skip=1; done=1; next} skip && /^              / {next} {skip=0; print}' \
    "$WORK/defaults.yaml" > "$WORK/broken.yaml"
if "$CHECK" -require-hpa "${programs[@]}" "$WORK/broken.yaml" > "$WORK/out" 2>&1 || ! grep -q 'no cpu limit' "$WORK/out"; then
    echo "FAIL: self-test 'no limits': k8scheck did not refuse a container without limits"; cat "$WORK/out"; exit 1
fi
echo "   self-test 'no limits': refused as expected"

echo "helm chart: OK ($passed values sets linted, rendered and checked; $(( ${#negatives[@]} + 3 )) negative checks refused)"
