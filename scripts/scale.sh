#!/usr/bin/env bash
# Scale check: a `skiff server` (no agent), `skiff sim` with NODES simulated
# nodes driving pods to Running, and a Deployment of PODS replicas; prints
# how long until all are Ready and each process's resident memory then.
#
#   scripts/scale.sh [--split] [SKIFF_BIN] [NODES] [PODS]
#
# --split runs the scheduler and the controller manager as processes of
# their own (`skiff scheduler`, `skiff controller-manager`), so their memory
# is reported apart from the API server's. Defaults: target/release/skiff,
# 5000 nodes, 50000 pods. Needs kubectl on PATH; uses port 16443.
set -euo pipefail
split=0
if [ "${1:-}" = --split ]; then split=1; shift; fi
B=$(realpath "${1:-target/release/skiff}"); NODES=${2:-5000}; PODS=${3:-50000}
D=$(mktemp -d); PORT=16443
procs="$B (server|sim|scheduler|controller-manager)"
cleanup() { pkill -f "$procs" 2>/dev/null || true; sleep 1; rm -rf "$D"; }
trap cleanup EXIT
extra=()
[ $split = 1 ] && extra=(--disable-scheduler --disable-controllers)
"$B" server --data-dir "$D/data" --listen 127.0.0.1:$PORT --disable-agent "${extra[@]}" >"$D/server.log" 2>&1 &
for _ in $(seq 1 60); do [ -f "$D/data/kubeconfig.yaml" ] && break; sleep 1; done
export KUBECONFIG=$D/data/kubeconfig.yaml
"$B" sim --kubeconfig "$KUBECONFIG" --nodes "$NODES" >"$D/sim.log" 2>&1 &
if [ $split = 1 ]; then
  "$B" scheduler --kubeconfig "$KUBECONFIG" >"$D/scheduler.log" 2>&1 &
  "$B" controller-manager --kubeconfig "$KUBECONFIG" >"$D/cm.log" 2>&1 &
fi
echo "waiting for $NODES nodes" >&2
until [ "$(kubectl get nodes --no-headers 2>/dev/null | wc -l)" -ge "$NODES" ]; do sleep 2; done
kubectl create deployment big --image=busybox --replicas="$PODS" >/dev/null
t0=$(date +%s)
while :; do
  r=$(kubectl get deploy big -o jsonpath='{.status.readyReplicas}')
  echo "$(( $(date +%s) - t0 )) s: ${r:-0} of $PODS Ready" >&2
  [ "${r:-0}" = "$PODS" ] && break
  [ $(( $(date +%s) - t0 )) -gt 900 ] && { echo "not all Ready after 15 minutes" >&2; exit 1; }
  sleep 10
done
running=$(kubectl get pods --field-selector=status.phase=Running --no-headers | wc -l)
echo "all $PODS Ready after ~$(( $(date +%s) - t0 )) s; pods Running: $running"
sleep 20
for p in $(pgrep -f "$procs"); do
  echo "$(tr '\0' ' ' </proc/$p/cmdline | awk '{print $2}') VmRSS $(awk '/VmRSS/ {printf "%.0f MiB", $2/1024}' /proc/$p/status)"
done
