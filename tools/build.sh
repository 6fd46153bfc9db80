#!/usr/bin/env bash
# Builds the local control plane, the real node's parts and their companions, only what is missing.
#
#   tools/build.sh            # the default groups: k8s etcd helm prometheus
#   tools/build.sh node       # the real node's own parts: containerd cni crictl pause
#   tools/build.sh k8s etcd   # just those groups
#   tools/build.sh kafka      # the Kafka broker's jars, for the task-event tests (Java and mvn, no Go)
#
# Every group but pause is a Go wrapper module under tools/<group>/ (go.mod lists the packages as tools).
# pause is tools/pause/pause.c, linked statically, packed as a docker-archive image by tools/pause/pack.py.
# kafka is no build at all: tools/kafka/pom.xml names the broker, and Maven copies its runtime jars.
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
# The version a wrapper module pins for one Go module (for the version strings linked in below).
mod_version() { sed -n "s|^[[:space:]]*$2 v\([^ ]*\).*|\1|p" "$here/$1/go.mod" | head -1; }

# group -> "binary=package ..." ; the ldflags make `kubectl version` report the real version.
pkgs() {
  case $1 in
    k8s) echo "kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler kubectl=k8s.io/kubernetes/cmd/kubectl kubelet=k8s.io/kubernetes/cmd/kubelet" ;;
    etcd) echo "etcd=go.etcd.io/etcd/server/v3" ;;
    helm) echo "helm=helm.sh/helm/v3/cmd/helm" ;;
    prometheus) echo "prometheus=github.com/prometheus/prometheus/cmd/prometheus promtool=github.com/prometheus/prometheus/cmd/promtool" ;;
    containerd) echo "containerd=github.com/containerd/containerd/v2/cmd/containerd ctr=github.com/containerd/containerd/v2/cmd/ctr containerd-shim-runc-v2=github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2" ;;
    # In a directory of their own: containerd's CNI bin_dir must hold plugins only.
    cni) echo "cni/bridge=github.com/containernetworking/plugins/plugins/main/bridge cni/host-local=github.com/containernetworking/plugins/plugins/ipam/host-local cni/loopback=github.com/containernetworking/plugins/plugins/main/loopback cni/portmap=github.com/containernetworking/plugins/plugins/meta/portmap" ;;
    crictl) echo "crictl=sigs.k8s.io/cri-tools/cmd/crictl" ;;
    *) echo "unknown group $1" >&2; exit 2 ;;
  esac
}
# tags GROUP BINARY: containerd's static build as its own Makefile does it; the shim also drops gRPC
# (it speaks ttrpc only), which keeps the one process per pod small.
tags() {
  case $1 in
    k8s) echo "selinux,notest" ;;
    containerd)
      local t="no_btrfs,no_devmapper,no_zfs,osusergo,netgo,static_build"
      [ "$2" = containerd-shim-runc-v2 ] && t="$t,no_grpc"
      echo "$t" ;;
    *) echo "" ;;
  esac
}
# Version strings as the projects' own builds link them, so `containerd --version`, the node's
# containerRuntimeVersion (containerd://2.4.2) and `crictl --version` tell the truth.
ldflags() {
  local v minor
  case $1 in
    k8s)
      v=$(k8s_version); minor=${v#*.}; minor=${minor%%.*}
      echo "-s -w -X k8s.io/component-base/version.gitVersion=v$v -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean" ;;
    containerd)
      v=$(mod_version containerd github.com/containerd/containerd/v2)
      echo "-s -w -X github.com/containerd/containerd/v2/version.Version=$v" ;;
    cni)
      v=$(mod_version cni github.com/containernetworking/plugins)
      echo "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$v" ;;
    crictl)
      v=$(mod_version crictl sigs.k8s.io/cri-tools)
      echo "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$v" ;;
    *) echo "-s -w" ;;
  esac
}

stamp_of() { echo "$(dirname "$BIN/$1")/.$(basename "$1").stamp"; }
up_to_date() { [ -x "$BIN/$1" ] && [ "$(cat "$(stamp_of "$1")" 2>/dev/null)" = "$2" ]; }

build_group() {
  local g=$1 dir="$here/$1" tg ld key pair name pkg all_tags=() t
  ld=$(ldflags "$g")
  local -A key_of=() missing_of=()
  for pair in $(pkgs "$g"); do
    name=${pair%%=*}; pkg=${pair#*=}; tg=$(tags "$g" "$name")
    # The same hash as ever for groups whose tags are per group, so existing stamps stay valid.
    key=$(cat "$dir/go.mod" "$dir/go.sum" <(echo "$tg $ld") | sha256sum | cut -c1-16)
    key_of[$name]=$key
    up_to_date "$name" "$key" && continue
    # Keys get a prefix: bash refuses an empty subscript, and most groups have no tags.
    [ -n "${missing_of[t$tg]+x}" ] || all_tags+=("$tg")
    missing_of[t$tg]="${missing_of[t$tg]:-} $name=$pkg"
  done
  if [ ${#all_tags[@]} -eq 0 ]; then echo "[build] $g: up to date in $BIN"; return; fi
  echo "[build] $g: building$(for t in "${all_tags[@]}"; do for pair in ${missing_of[t$t]}; do printf ' %s' "${pair%%=*}"; done; done) (this takes minutes from cold; go prints each module it downloads)"
  local start=$SECONDS out
  out=$(mktemp -d)
  (cd "$dir" && go mod download)
  # One `go build` per tag set: binaries built together share the compile of their common packages.
  for t in "${all_tags[@]}"; do
    local names=() paths=()
    for pair in ${missing_of[t$t]}; do names+=("${pair%%=*}"); paths+=("${pair#*=}"); done
    if [ ${#paths[@]} -eq 1 ]; then
      (cd "$dir" && go build -trimpath -tags="$t" -ldflags="$ld" -o "$out/$(basename "${names[0]}")" "${paths[0]}")
    else
      (cd "$dir" && go build -trimpath -tags="$t" -ldflags="$ld" -o "$out/" "${paths[@]}")
    fi
    for name in "${names[@]}"; do
      mkdir -p "$(dirname "$BIN/$name")"
      mv "$out/$(basename "$name")" "$BIN/$name"
      echo "${key_of[$name]}" > "$(stamp_of "$name")"
    done
  done
  rm -rf "$out"
  echo "[build] $g: done in $((SECONDS - start)) s"
}

# The pause image: the process that holds a pod's namespaces. A static C program (no libc in the
# image), packed as a one-layer docker-archive that `ctr images import` reads; no container engine.
build_pause() {
  local src="$here/pause" key start=$SECONDS
  command -v gcc >/dev/null || { echo "[build] pause: gcc is missing (apt-get install gcc libc6-dev)" >&2; exit 1; }
  key=$(cat "$src/pause.c" "$src/pack.py" <(gcc --version | head -1) | sha256sum | cut -c1-16)
  if up_to_date pause "$key" && [ -f "$BIN/pause.tar" ]; then echo "[build] pause: up to date in $BIN"; return; fi
  local out; out=$(mktemp -d)
  gcc -static -Os -s -Wall -Werror -o "$out/pause" "$src/pause.c"
  python3 "$src/pack.py" --binary "$out/pause" --reference "$(cat "$src/REFERENCE")" --output "$out/pause.tar"
  mv "$out/pause" "$BIN/pause"; mv "$out/pause.tar" "$BIN/pause.tar"
  echo "$key" > "$(stamp_of pause)"
  rm -rf "$out"
  echo "[build] pause: done in $((SECONDS - start)) s ($BIN/pause.tar)"
}

# The Kafka broker (tools/localkube/kafka.py runs it): the runtime jars of tools/kafka/pom.xml, copied by
# Maven into $BIN/kafka/libs. The stamp hashes the pom and the Java version; a new copy is made aside and
# moved into place whole, so an interrupted fetch never leaves half a classpath behind a valid stamp.
build_kafka() {
  local pom="$here/kafka/pom.xml" key start=$SECONDS out
  command -v mvn >/dev/null || { echo "[build] kafka: mvn is missing (apt-get install maven)" >&2; exit 1; }
  command -v java >/dev/null || { echo "[build] kafka: java is missing (apt-get install openjdk-17-jre-headless)" >&2; exit 1; }
  key=$(cat "$pom" <(java -version 2>&1 | head -1) | sha256sum | cut -c1-16)
  if up_to_date kafka "$key" && compgen -G "$BIN/kafka/libs/kafka_2.13-*.jar" >/dev/null; then
    echo "[build] kafka: up to date in $BIN/kafka"; return
  fi
  echo "[build] kafka: copying the broker's jars (Maven prints nothing while it downloads)"
  out=$(mktemp -d "$BIN/.kafka.XXXXXX")
  # -q still prints colour resets on some Maven 3.8 builds; pipefail keeps mvn's exit status.
  mvn -q -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$out/libs" 2>&1 | sed 's/\x1b\[[0-9;]*m//g'
  rm -rf "$BIN/kafka"
  mv "$out" "$BIN/kafka"
  chmod 755 "$BIN/kafka"
  echo "$key" > "$(stamp_of kafka)"
  echo "[build] kafka: done in $((SECONDS - start)) s ($(find "$BIN/kafka/libs" -name '*.jar' | wc -l) jars in $BIN/kafka/libs)"
}

groups=("$@"); [ ${#groups[@]} -gt 0 ] || groups=(k8s etcd helm prometheus)
for g in "${groups[@]}"; do
  case $g in
    node) for n in containerd cni crictl; do build_group "$n"; done; build_pause ;;
    pause) build_pause ;;
    kafka) build_kafka ;;
    *) build_group "$g" ;;
  esac
done
