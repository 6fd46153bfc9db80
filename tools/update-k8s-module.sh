#!/usr/bin/env bash
# Regenerates tools/k8s/go.mod and go.sum for one k8s.io/kubernetes version.
# Run by hand when bumping Kubernetes; the result is committed, so builds never need this.
#
# Why: k8s.io/kubernetes requires its staging modules at v0.0.0 and maps them to ./staging with replace
# lines that only apply inside its own repository. We derive the staging list from the served go.mod of
# that exact version and point each module at its published v0.<minor>.<patch> tag.
set -euo pipefail
V=${1:-1.37.2}
export GOTOOLCHAIN=local GOFLAGS=-mod=mod GOSUMDB=off
cd "$(dirname "$0")/k8s"
rm -f go.mod go.sum
go mod init cronlet.invalid/tools/k8s >/dev/null 2>&1
gomod=$(go mod download -json "k8s.io/kubernetes@v$V" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
# Keep upstream's runtime defaults (godebug lines).
grep -E '^[[:space:]]*godebug' "$gomod" | sort -u >> go.mod || true
for m in $(sed -n 's|^[[:space:]]*\(k8s.io/[^ ]*\) => \./staging/src/.*|\1|p' "$gomod"); do
  go mod edit -replace="$m=$m@v0.${V#1.}"
done
go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@v$V" "k8s.io/kubernetes/cmd/kube-controller-manager@v$V" \
  "k8s.io/kubernetes/cmd/kube-scheduler@v$V" "k8s.io/kubernetes/cmd/kubectl@v$V"
go mod tidy
echo "tools/k8s now pins k8s.io/kubernetes v$V"
