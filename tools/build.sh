#!/usr/bin/env bash
# Builds the local control plane and its companions from Go modules, only what is missing.
#
#   tools/build.sh            # everything: k8s etcd helm prometheus
#   tools/build.sh k8s etcd   # just those groups
#
# Binaries land in $CRONLET_BIN (default ~/.cache/cronlet/bin), outside the checkout, so every clone on
# this machine (CI included) reuses them. Each binary has a stamp holding the hash of its wrapper module's
# go.mod and go.sum and of the build flags: a binary is rebuilt only when that hash changes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
BIN=${CRONLET_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/cronlet/bin}
mkdir -p "$BIN"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod GOSUMDB=off CGO_ENABLED=0

k8s_version() { sed -n 's|^[[:space:]]*k8s.io/kubernetes v\([0-9.]*\).*|\1|p' "$here/k8s/go.mod" | head -1; }

# group -> "binary=package ..." ; the ldflags make `kubectl version` report the real version.
pkgs() {
  case $1 in
    k8s) echo "kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler kubectl=k8s.io/kubernetes/cmd/kubectl kubelet=k8s.io/kubernetes/cmd/kubelet" ;;
    etcd) echo "etcd=go.etcd.io/etcd/server/v3" ;;
    helm) echo "helm=helm.sh/helm/v3/cmd/helm" ;;
    prometheus) echo "prometheus=github.com/prometheus/prometheus/cmd/prometheus promtool=github.com/prometheus/prometheus/cmd/promtool" ;;
    *) echo "unknown group $1" >&2; exit 2 ;;
  esac
}
tags() { [ "$1" = k8s ] && echo "selinux,notest" || echo ""; }
ldflags() {
  if [ "$1" = k8s ]; then
    local v minor; v=$(k8s_version); minor=${v#*.}; minor=${minor%%.*}
    echo "-s -w -X k8s.io/component-base/version.gitVersion=v$v -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
  else
    echo "-s -w"
  fi
}

build_group() {
  local g=$1 dir="$here/$1" tg ld key missing=() names=() pair name pkg
  tg=$(tags "$g"); ld=$(ldflags "$g")
  key=$(cat "$dir/go.mod" "$dir/go.sum" <(echo "$tg $ld") | sha256sum | cut -c1-16)
  for pair in $(pkgs "$g"); do
    name=${pair%%=*}; pkg=${pair#*=}
    if [ -x "$BIN/$name" ] && [ "$(cat "$BIN/.$name.stamp" 2>/dev/null)" = "$key" ]; then
      continue
    fi
    missing+=("$pkg"); names+=("$name")
  done
  if [ ${#missing[@]} -eq 0 ]; then echo "[build] $g: up to date in $BIN"; return; fi
  echo "[build] $g: building ${names[*]} (this takes minutes from cold; go prints each module it downloads)"
  local start=$SECONDS out
  out=$(mktemp -d)
  (cd "$dir" && go mod download)
  if [ ${#missing[@]} -eq 1 ]; then
    (cd "$dir" && go build -trimpath -tags="$tg" -ldflags="$ld" -o "$out/${names[0]}" "${missing[0]}")
  else
    (cd "$dir" && go build -trimpath -tags="$tg" -ldflags="$ld" -o "$out/" "${missing[@]}")
  fi
  for name in "${names[@]}"; do
    mv "$out/$name" "$BIN/$name"
    echo "$key" > "$BIN/.$name.stamp"
  done
  rm -rf "$out"
  echo "[build] $g: done in $((SECONDS - start)) s"
}

groups=("$@"); [ ${#groups[@]} -gt 0 ] || groups=(k8s etcd helm prometheus)
for g in "${groups[@]}"; do build_group "$g"; done
