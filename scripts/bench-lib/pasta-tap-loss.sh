#!/bin/bash
# Diagnostic for pasta's container->host path through its tap device (docs/benchmarks-net.md): pasta started
# by hand with burrow's flags (and -T auto, as with --allow-host-loopback) on a fresh `unshare -Urn`
# namespace, then N iperf3 runs of 3 s from the namespace to a server on the host's 127.0.0.1 through the
# gateway 10.0.2.2. Prints Gbit/s and the sender's retransmissions per run, then tap0's counters and the
# namespace's TCP loss counters. Run as an unprivileged user. Env: N (runs, 8), QLEN (tap queue length to
# set, as burrow does: 10000; empty: the kernel's 1000), PORT (host iperf3 port, 15301).
set -eu
N=${N:-8} QLEN=${QLEN-10000} PORT=${PORT:-15301}
unshare -Urn sleep 600 >/dev/null 2>&1 & holder=$!
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
until [ "$(cat /proc/$holder/comm 2>/dev/null)" = sleep ]; do sleep 0.01; done
ns() { nsenter --preserve-credentials -U -n -t "$holder" "$@"; }
ns ip link set lo up
pasta --foreground --quiet --config-net --ipv4-only --ns-ifname tap0 --mtu=65520 --address=10.0.2.100 \
  --netmask=24 --gateway=10.0.2.2 --dns-forward=10.0.2.3 -t none -u none -T auto -U auto --pid "$dir/pid" \
  "$holder" >"$dir/log" 2>&1 & pasta=$!
until [ -s "$dir/pid" ]; do kill -0 $pasta 2>/dev/null || { echo "pasta died: $(cat "$dir/log")" >&2; exit 1; }; sleep 0.01; done
[ -z "$QLEN" ] || ns ip link set tap0 txqueuelen "$QLEN"
iperf3 -s -B 127.0.0.1 -p "$PORT" >/dev/null 2>&1 &
sleep 0.3
for _ in $(seq "$N"); do
  ns timeout 30 iperf3 -J -t 3 -c 10.0.2.2 -p "$PORT" 2>/dev/null | python3 -c 'import json, sys
e = json.load(sys.stdin)["end"]
print("%.2f rtx=%s" % (e["sum_received"]["bits_per_second"] / 1e9, e["sum_sent"].get("retransmits")), end="  ")'
done
echo
ns ip -s link show tap0 | sed -n '3,6p'
ns nstat -az 2>/dev/null | grep -E '^(TcpRetransSegs|TcpExtTCPTimeouts) ' || true
