#!/usr/bin/env bash
# Builds Cronlet's image from the unchanged Dockerfile with buildah, without Docker or a registry.
#
#   tools/image.sh         # base (cached) + image + archive for the real node (+ import into a running one)
#   tools/image.sh base    # only the base image
#
# 1. Base: the Dockerfile's FROM (python:3.11-slim) is made here: `mmdebstrap --variant=minbase` of
#    Debian bookworm with python3.11, python3-venv, python-is-python3 and ca-certificates, plus this
#    machine's locally added CA certificates (/usr/local/share/ca-certificates) and an /etc/pip.conf that
#    points pip at the system bundle, so pip inside the build trusts what the host trusts. Committed with
#    buildah under the FROM's full name (docker.io/library/python:3.11-slim). Cached: rebuilt only when
#    its stamp (suite, packages, host CAs, this recipe) changes.
# 2. Image: `buildah bud --pull=never --layers` of the Dockerfile, tagged as the chart installs it by
#    default (values.yaml image.repository, tag = Chart appVersion): docker.io/library/cronlet:0.1.0.
# 3. Archive: $CRONLET_IMAGES/cronlet.tar (docker-archive), which every localkube real node imports at
#    start; a running `python -m localkube up --node real` gets it imported at once.
#
# buildah's storage lives in ~/.cache/cronlet/containers, not in the host's /var/lib/containers.
# Must not: change the Dockerfile, pull from a registry, or touch the host's container storage.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/cronlet
images=${CRONLET_IMAGES:-$cache/images}
BIN=${CRONLET_BIN:-$cache/bin}
storage=$cache/containers
suite=bookworm
packages="python3.11 python3-venv python-is-python3 ca-certificates"
mirrors=("deb http://deb.debian.org/debian $suite main"
         "deb http://deb.debian.org/debian $suite-updates main"
         "deb http://deb.debian.org/debian-security $suite-security main")
mkdir -p "$images" "$storage"

for tool in buildah mmdebstrap; do
  command -v $tool >/dev/null || { echo "[image] $tool is missing: apt-get install buildah mmdebstrap" >&2; exit 1; }
done
bah() { buildah --root "$storage/storage" --runroot "$storage/run" --storage-driver overlay "$@"; }

# The base's full name, from the Dockerfile's first FROM (python:3.11-slim -> docker.io/library/...).
from=$(sed -n 's/^FROM[[:space:]]\+\([^[:space:]]\+\).*/\1/p' "$root/Dockerfile" | head -1)
full_name() {
  local name=$1
  case $name in
    */*) case ${name%%/*} in *.*|*:*|localhost) echo "$name" ;; *) echo "docker.io/$name" ;; esac ;;
    *) echo "docker.io/library/$name" ;;
  esac
}
base_ref=$(full_name "$from")

build_base() {
  local cas=() key stamp=$storage/base.stamp start=$SECONDS tmp
  shopt -s nullglob; cas=(/usr/local/share/ca-certificates/*.crt); shopt -u nullglob
  key=$( { echo "$suite $packages ${mirrors[*]}"; sed -n '/^build_base()/,/^}/p' "$0"; cat "${cas[@]}" /dev/null; } |
    sha256sum | cut -c1-16)
  if [ "$(cat "$stamp" 2>/dev/null)" = "$key" ] && bah inspect --type image "$base_ref" >/dev/null 2>&1; then
    echo "[image] base $base_ref: up to date"
    return
  fi
  echo "[image] base $base_ref: mmdebstrap $suite minbase + $packages (${#cas[@]} local CA certificates)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  local hooks=(--customize-hook='printf "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n" > "$1/etc/pip.conf"')
  if [ ${#cas[@]} -gt 0 ]; then
    hooks+=(--customize-hook="copy-in ${cas[*]} /usr/local/share/ca-certificates/"
            --customize-hook='chroot "$1" update-ca-certificates')
  fi
  # Like the official slim images: no docs, man pages or translations (copyright files stay).
  mmdebstrap --variant=minbase --include="${packages// /,}" --quiet \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    "${hooks[@]}" "$suite" "$tmp/rootfs.tar" "${mirrors[@]}"
  local ctr
  ctr=$(bah from --quiet scratch)
  bah add --quiet "$ctr" "$tmp/rootfs.tar" / >/dev/null
  bah config --os linux --arch amd64 --env LANG=C.UTF-8 \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd python3 "$ctr"
  bah commit --quiet --rm "$ctr" "$base_ref" >/dev/null
  echo "$key" > "$stamp"
  echo "[image] base $base_ref: built in $((SECONDS - start)) s, $(bah images --format '{{.Size}}' "$base_ref")"
}

build_image() {
  local values=$root/charts/cronlet/values.yaml repo tag ref start=$SECONDS id archive=$images/cronlet.tar
  repo=$(sed -n '/^image:/,/^[^ #]/s/^  repository:[[:space:]]*"\{0,1\}\([^"[:space:]]*\)"\{0,1\}.*/\1/p' "$values")
  tag=$(sed -n '/^image:/,/^[^ #]/s/^  tag:[[:space:]]*"\{0,1\}\([^"[:space:]]*\)"\{0,1\}.*/\1/p' "$values")
  [ -n "$tag" ] || tag=$(sed -n 's/^appVersion:[[:space:]]*"\{0,1\}\([^"[:space:]]*\)"\{0,1\}.*/\1/p' "$root/charts/cronlet/Chart.yaml")
  ref=$(full_name "$repo:$tag")
  echo "[image] $ref: buildah bud of the Dockerfile on $base_ref"
  # REVISION and CREATED come from the commit, not the clock: an unchanged tree rebuilds from the cache.
  # They are also given as --label: buildah 1.28's layer cache ignores build-arg values, so a cached
  # build would otherwise keep the revision label of whichever commit first built those layers.
  local revision created
  revision=$(cd "$root" && git rev-parse HEAD 2>/dev/null || echo unknown)
  created=$(cd "$root" && git log -1 --format=%cI 2>/dev/null || echo unknown)
  (cd "$root" && bah bud --quiet --pull=never --layers --isolation chroot -f Dockerfile -t "$ref" \
    --build-arg VERSION="$tag" --build-arg REVISION="$revision" --build-arg CREATED="$created" \
    --label org.opencontainers.image.version="$tag" \
    --label org.opencontainers.image.revision="$revision" \
    --label org.opencontainers.image.created="$created" .) >/dev/null
  id=$(bah images --noheading --no-trunc --format '{{.ID}}' "$ref" | head -1)
  if [ "$(cat "$archive.id" 2>/dev/null)" != "$id" ] || [ ! -f "$archive" ]; then
    rm -f "$archive.tmp"
    bah push --quiet "$ref" "docker-archive:$archive.tmp:$ref" >/dev/null
    mv "$archive.tmp" "$archive"
    echo "$id" > "$archive.id"
  fi
  echo "[image] $ref: done in $((SECONDS - start)) s; image size $(bah images --format '{{.Size}}' "$ref"), archive $(du -h "$archive" | cut -f1) ($archive)"
  import_into_running_node "$archive"
}

# A node of `python -m localkube up --node real` is up: import there too, so no restart is needed.
import_into_running_node() {
  local state=$cache/localkube.json socket
  [ -f "$state" ] || return 0
  socket=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("containerd_socket") or "")' "$state" 2>/dev/null || true)
  [ -n "$socket" ] && [ -S "$socket" ] || return 0
  local out
  # ctr's stderr carries containerd's cgroup v1 deprecation warning on every call: shown only on failure.
  out=$("$BIN/ctr" --address "$socket" --namespace k8s.io images import --platform linux/amd64 "$1" 2>&1) ||
    { echo "$out" >&2; echo "[image] import into the running real node failed" >&2; exit 1; }
  echo "[image] imported into the running real node ($socket)"
}

build_base
[ "${1:-}" = base ] || build_image
