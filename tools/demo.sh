#!/usr/bin/env bash
# `make demo`: a local control plane, the CRD, the operator and examples/01-minimal, then
# `kubectl get st -w` as runs happen. Ctrl-C stops everything and removes what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CRONLET_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/cronlet/bin}
work=$(mktemp -d /tmp/cronlet-demo-XXXXXX)
pids=()
cleanup() {
  trap - EXIT INT TERM
  echo; echo "[demo] stopping"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  python -m localkube down --state-file "$work/localkube.json" >/dev/null 2>&1 || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'cleanup; exit 0' INT TERM  # Ctrl-C is how the demo ends: not an error

echo "[demo] starting the local control plane (etcd, kube-apiserver, controller-manager, scheduler, fake kubelet)"
python -m localkube up --mode execute --state-file "$work/localkube.json" >"$work/localkube.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 120); do
  grep -q '^export KUBECONFIG=' "$work/localkube.log" 2>/dev/null && break
  kill -0 "${pids[0]}" 2>/dev/null || { cat "$work/localkube.log"; exit 1; }
  sleep 0.5
done
eval "$(grep -m1 '^export KUBECONFIG=' "$work/localkube.log")"
kubectl=("$BIN/kubectl" --kubeconfig "$KUBECONFIG")
echo "[demo] control plane up: export KUBECONFIG=$KUBECONFIG"

"${kubectl[@]}" apply -f crds/scheduledtasks.cronlet.dev.yaml >/dev/null
"${kubectl[@]}" wait --for=condition=Established crd/scheduledtasks.cronlet.dev --timeout=60s >/dev/null
port=${CRONLET_DEMO_METRICS_PORT:-8080}
cronlet operator --metrics-port "$port" >"$work/operator.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 120); do
  curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  kill -0 "${pids[1]}" 2>/dev/null || { cat "$work/operator.log"; exit 1; }
  sleep 0.5
done
echo "[demo] operator ready (metrics on http://127.0.0.1:$port/metrics; log $work/operator.log)"
"${kubectl[@]}" apply -f examples/01-minimal/
echo "[demo] watching runs (every 5 s); in another shell: export KUBECONFIG=$KUBECONFIG"
echo "[demo] Ctrl-C to stop"
"${kubectl[@]}" get scheduledtasks -o wide -w
