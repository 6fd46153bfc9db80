#!/usr/bin/env bash
# `make demo`: the real thing, locally. A control plane with a real node (containerd, runc and a kubelet:
# `python -m localkube up --node real`), the image of `make image` imported into it, the chart installed by
# helm with charts/cronlet/ci/local-values.yaml, and examples/01-minimal running in executor pods on the
# node; then `kubectl get st -w` as runs happen. Ctrl-C stops everything and removes what it started.
#
# CRONLET_DEMO_METRICS_PORT picks the operator's port on this machine (it runs on the node's network);
# default: a free one.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CRONLET_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/cronlet/bin}
work=$(mktemp -d /tmp/cronlet-demo-XXXXXX)
up_pid=
watch_pid=
cleanup() {
  trap - EXIT INT TERM
  echo; echo "[demo] stopping (the chart, the operator and the tasks go with the cluster)"
  [ -z "$watch_pid" ] || kill "$watch_pid" 2>/dev/null || true
  # Stops the node (containers, its namespace, cgroups and bridge) and then the control plane.
  [ -z "$up_pid" ] || python -m localkube down --state-file "$work/localkube.json" >/dev/null 2>&1 || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'cleanup; exit 0' INT TERM  # Ctrl-C is how the demo ends: not an error
start=$SECONDS

echo "[demo] starting the local control plane and a real node (containerd + kubelet)"
python -m localkube up --node real --state-file "$work/localkube.json" >"$work/localkube.log" 2>&1 &
up_pid=$!
for _ in $(seq 1 240); do
  grep -q '^export KUBECONFIG=' "$work/localkube.log" 2>/dev/null && break
  kill -0 "$up_pid" 2>/dev/null || { cat "$work/localkube.log"; exit 1; }
  sleep 0.5
done
grep -q '^export KUBECONFIG=' "$work/localkube.log" || { cat "$work/localkube.log"; exit 1; }
eval "$(grep -m1 '^export KUBECONFIG=' "$work/localkube.log")"
kubectl=("$BIN/kubectl" --kubeconfig "$KUBECONFIG")
node=$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["node"])' "$work/localkube.json")
echo "[demo] control plane and node $node up in $((SECONDS - start)) s: export KUBECONFIG=$KUBECONFIG"

# The node of `localkube up --node real` is the cluster's only one, so it is not tainted; label it as the
# tests' dedicated node is, so that local-values.yaml and the examples' placement mean the same here.
"${kubectl[@]}" label node "$node" localkube.dev/real-node=true --overwrite >/dev/null

# Per cluster, so given here and not in local-values.yaml: the API server's port (the operator reaches it
# at 127.0.0.1 on the node's network) and a free port of this machine for the operator's metrics.
api_port=$("${kubectl[@]}" config view --minify -o jsonpath='{.clusters[0].cluster.server}')
api_port=${api_port##*:}
metrics_port=${CRONLET_DEMO_METRICS_PORT:-$(python -c 'from localkube import ports; print(ports.free_port())')}
echo "[demo] helm install cronlet charts/cronlet -n cronlet-system -f charts/cronlet/ci/local-values.yaml" \
  "--set apiServer.port=$api_port --set metrics.port=$metrics_port"
HELM_CACHE_HOME=$work/helm/cache HELM_CONFIG_HOME=$work/helm/config HELM_DATA_HOME=$work/helm/data \
  "$BIN/helm" --kubeconfig "$KUBECONFIG" install cronlet charts/cronlet -n cronlet-system --create-namespace \
  -f charts/cronlet/ci/local-values.yaml --set "apiServer.port=$api_port" --set "metrics.port=$metrics_port" \
  >"$work/helm.log"
"${kubectl[@]}" rollout status -n cronlet-system deployment/cronlet --timeout=180s >/dev/null ||
  { "${kubectl[@]}" describe pods -n cronlet-system; exit 1; }
echo "[demo] operator Ready in $((SECONDS - start)) s (metrics on http://127.0.0.1:$metrics_port/metrics;" \
  "log: kubectl logs -n cronlet-system deployment/cronlet)"

# The example with the node's placement merged into its podTemplate (localkube.node.placement()).
python - examples/01-minimal/task.yaml <<'EOF' | "${kubectl[@]}" apply -f -
import json, sys

import yaml

from localkube import node

task = yaml.safe_load(open(sys.argv[1]))
task["spec"].setdefault("podTemplate", {}).setdefault("spec", {}).update(node.placement())
print(json.dumps(task))
EOF
echo "[demo] a run's output: kubectl logs -l cronlet.dev/task=hello --prefix --tail=2" \
  "(pods: kubectl get pods -l cronlet.dev/task=hello -o wide)"
echo "[demo] in another shell: export KUBECONFIG=$KUBECONFIG"
echo "[demo] watching runs every 5 s; Ctrl-C to stop"
"${kubectl[@]}" get scheduledtasks -o wide -w &
watch_pid=$!
# Ctrl-C reaches the watch too: its end is the demo's normal end (the EXIT trap cleans up, exit 0).
wait "$watch_pid" || true
