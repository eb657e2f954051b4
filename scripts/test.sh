#!/usr/bin/env bash
# Runs Skiff's whole test suite. Works as root on a fresh Debian machine:
# installs the system packages the tests need (idempotent), then runs cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
# The kubelet end-to-end test runs real containers: runc, and busybox-static
# to build its test image from; `ip` (iproute2) inspects pod networks.
command -v runc >/dev/null 2>&1 || need+=(runc)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
# containerd's CRI plugin wires its pods with the CNI bridge plugins.
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
# The agent also runs pods through Debian's containerd (its CRI plugin).
command -v containerd >/dev/null 2>&1 || need+=(containerd)
[ -x /bin/busybox ] && /bin/busybox --list >/dev/null 2>&1 || need+=(busybox-static)
# Image pulls are tested against a local registry, filled with skopeo.
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${need[*]} (run as root, or install them)" >&2
    exit 1
  fi
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's etcd package may start a system etcd on 2379; the tests use their
# own ports, so it is left alone.

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked "$@" 2>&1 | tee "$log" || status=$?
# One closing line for the whole suite (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit $status
