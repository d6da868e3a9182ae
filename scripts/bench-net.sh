#!/bin/bash
# Network benchmark (not a timed test). Run as an unprivileged user, e.g.
#   setpriv --reuid=burrow-t1 --regid=burrow-t1 --init-groups --reset-env env HOME=/home/burrow-t1 \
#     PATH=/usr/sbin:/usr/bin:/sbin:/bin NET_LIB_BIN=<net_lib test binary> scripts/bench-net.sh
# For each backend (slirp4netns, pasta) and each path (the container reaching a server on the
# host's loopback; the host reaching a server in the container through a published port):
# iperf3 in both directions and the median TCP connect time, once with the backend attached by
# burrow's library (burrow::net::attach) and once started by hand with the same flags; the ratio
# burrow/hand is printed (target >= 0.95). Also the time attach() takes (target: networking adds
# <= 10 ms to startup). Only loopback and the backends' internal addresses carry traffic.
#
# Env: SECS (iperf3 seconds, default 3), REPS (repetitions, default 3), BACKENDS (default "slirp4netns pasta"),
#      NET_LIB_BIN (the net_lib test binary; built with cargo if unset).
# To add rows (e.g. `burrow run`): write a function like run_burrow_lib that starts a namespace
# target, and call `measure LABEL BACKEND TARGET_PID` for it; see the end of this file.
set -uo pipefail   # no -e: one failed measurement prints "fail", the rest still runs
SECS=${SECS:-3}
REPS=${REPS:-3}   # burrow and by-hand runs alternate REPS times; the median is printed
BACKENDS=${BACKENDS:-"slirp4netns pasta"}
HOST_IPERF_PORT=${HOST_IPERF_PORT:-15201}
HOST_CONNECT_PORT=${HOST_CONNECT_PORT:-15202}
PUB_IPERF_PORT=${PUB_IPERF_PORT:-15203}
PUB_CONNECT_PORT=${PUB_CONNECT_PORT:-15204}
PUBLISH="127.0.0.1:$PUB_IPERF_PORT:5201,127.0.0.1:$PUB_CONNECT_PORT:5202"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/bench-net.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

[ "$(id -u)" != 0 ] || { echo "run as an unprivileged user (see the top of $0)" >&2; exit 2; }
for t in iperf3 python3 nsenter unshare; do
  command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 2; }
done
if [ -z "${NET_LIB_BIN:-}" ]; then
  NET_LIB_BIN=$(cd "$ROOT" && cargo test --test net_lib --no-run 2>&1 | sed -n 's/.*Executable.*(\(.*\))/\1/p' | tail -1)
fi

# --- helpers --------------------------------------------------------------------------------
# Median connect time in us over n connects (a pause between them: libslirp listens with a
# backlog of 1, so back-to-back connects to a slirp4netns hostfwd port drop SYNs under load).
CONNECT_PY='
import socket, statistics, sys, time
h, p, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ts, failed = [], 0
for _ in range(n):
    t = time.perf_counter()
    try:
        s = socket.create_connection((h, p), timeout=2)
    except OSError:
        failed += 1; continue
    ts.append(time.perf_counter() - t); s.close(); time.sleep(0.002)
print(("%.0f" % (statistics.median(ts) * 1e6) if ts else "fail") + ("(%d failed)" % failed if failed else ""))'
ACCEPT_PY='
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(128)
while True:
    c, _ = s.accept(); c.close()'

new_target() { # starts a process in new user+net namespaces; prints its pid (killed by the caller)
  unshare -Urn sleep 600 >/dev/null 2>&1 &
  local p=$!
  until [ "$(cat /proc/$p/comm 2>/dev/null)" = sleep ]; do sleep 0.01; done
  nsenter --preserve-credentials -U -n -t "$p" ip link set lo up
  echo "$p"
}
ns() { local p=$1; shift; nsenter --preserve-credentials -U -n -t "$p" "$@"; }

gbits() { # iperf3 client args...: prints receiver Gbit/s
  iperf3 -J -t "$SECS" "$@" 2>/dev/null | python3 -c '
import json, sys
try: print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9))
except Exception: print("fail")'
}

declare -A RES
# measure LABEL BACKEND PID HOSTADDR: iperf3 and connect latency on both paths
measure() {
  local label=$1 be=$2 p=$3 hostaddr=$4
  RES[$label,$be,c2h]+=" "$(ns "$p" bash -c "$(declare -f gbits); SECS=$SECS gbits -c $hostaddr -p $HOST_IPERF_PORT")
  RES[$label,$be,h2c_rev]+=" "$(ns "$p" bash -c "$(declare -f gbits); SECS=$SECS gbits -c $hostaddr -p $HOST_IPERF_PORT -R")
  RES[$label,$be,lat_c2h]+=" "$(ns "$p" python3 -c "$CONNECT_PY" "$hostaddr" "$HOST_CONNECT_PORT" 200)
  # nsenter itself (not the ns function) in the background, so that $! is the server's pid.
  nsenter --preserve-credentials -U -n -t "$p" iperf3 -s -p 5201 >/dev/null 2>&1 &
  local s1=$!
  nsenter --preserve-credentials -U -n -t "$p" python3 -c "$ACCEPT_PY" 0.0.0.0 5202 >/dev/null 2>&1 &
  local s2=$!
  sleep 0.3
  RES[$label,$be,pub_h2c]+=" "$(gbits -c 127.0.0.1 -p "$PUB_IPERF_PORT")
  RES[$label,$be,pub_c2h]+=" "$(gbits -c 127.0.0.1 -p "$PUB_IPERF_PORT" -R)
  RES[$label,$be,lat_pub]+=" "$(python3 -c "$CONNECT_PY" 127.0.0.1 "$PUB_CONNECT_PORT" 200)
  kill "$s1" "$s2"; wait "$s1" "$s2" 2>/dev/null || true
}

# --- burrow's library ---------------------------------------------------------------------
run_burrow_lib() { # BACKEND: attach through burrow::net, measure, detach
  local be=$1 p; p=$(new_target)
  coproc HOLD { BURROW_NET_BENCH_PID=$p BURROW_NET_BENCH_MODE=$be BURROW_NET_BENCH_ALLOW=1 \
    BURROW_NET_BENCH_PUBLISH=$PUBLISH "$NET_LIB_BIN" --exact bench_attach_and_hold --ignored --nocapture 2>&1; }
  local line=""
  while read -r -u "${HOLD[0]}" line; do case $line in BENCH*) break ;; esac; done
  RES[burrow,$be,attach_ms]+=" "$(sed -n 's/.*attach_ms=\([0-9.]*\).*/\1/p' <<<"$line")
  # What the launcher does inside the container after attach (Plan::configure_inside).
  [ "$be" = pasta ] && ns "$p" ip link set tap0 txqueuelen 10000
  local host=10.0.2.2; [ "$be" = pasta ] && host=127.0.0.1   # pasta: the splice path
  measure burrow "$be" "$p" "$host"
  eval "exec ${HOLD[1]}>&-"; wait "$HOLD_PID" 2>/dev/null || true
  kill "$p"; wait "$p" 2>/dev/null || true
}

# --- the same backends started by hand with the same flags ---------------------------------
run_hand() {
  local be=$1 p; p=$(new_target)
  local t0 t1 bp
  if [ "$be" = slirp4netns ]; then
    rm -f "$WORK/api.sock"
    t0=$(date +%s%N)
    slirp4netns --configure --mtu=65520 --enable-sandbox --enable-seccomp --api-socket "$WORK/api.sock" \
      "$p" tap0 >"$WORK/slirp.log" 2>&1 & bp=$!; PIDS+=("$bp")
    until ns "$p" ip -4 -o addr show dev tap0 2>/dev/null | grep -q 10.0.2.100; do sleep 0.001; done
    t1=$(date +%s%N)
    for spec in ${PUBLISH//,/ }; do
      IFS=: read -r hip hport cport <<<"$spec"
      python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.argv[2].encode()); s.shutdown(1); s.recv(200)' \
        "$WORK/api.sock" "{\"execute\":\"add_hostfwd\",\"arguments\":{\"proto\":\"tcp\",\"host_addr\":\"$hip\",\"host_port\":$hport,\"guest_port\":$cport}}"
    done
    measure hand "$be" "$p" 10.0.2.2
  else
    rm -f "$WORK/pasta.pid"
    t0=$(date +%s%N)
    pasta --foreground --quiet --config-net --ipv4-only --ns-ifname tap0 --mtu=65520 --address=10.0.2.100 \
      --netmask=24 --gateway=10.0.2.2 --dns-forward=10.0.2.3 -t "127.0.0.1/$PUB_IPERF_PORT:5201" \
      -t "127.0.0.1/$PUB_CONNECT_PORT:5202" -u none -T auto -U auto --pid "$WORK/pasta.pid" "$p" \
      >"$WORK/pasta.log" 2>&1 & bp=$!; PIDS+=("$bp")
    until [ -s "$WORK/pasta.pid" ]; do sleep 0.001; done
    t1=$(date +%s%N)
    measure hand "$be" "$p" 127.0.0.1
  fi
  RES[hand,$be,attach_ms]+=" $(( (t1 - t0) / 1000000 ))"
  kill "$bp" "$p"; wait "$bp" "$p" 2>/dev/null || true
}

# Host-side servers for the container-to-host path.
iperf3 -s -B 127.0.0.1 -p "$HOST_IPERF_PORT" >/dev/null 2>&1 & PIDS+=($!)
python3 -c "$ACCEPT_PY" 127.0.0.1 "$HOST_CONNECT_PORT" >/dev/null 2>&1 & PIDS+=($!)
sleep 0.3

for be in $BACKENDS; do
  command -v "$be" >/dev/null || { echo "SKIP: $be not installed" >&2; continue; }
  for _ in $(seq "$REPS"); do
    run_burrow_lib "$be"
    run_hand "$be"
  done
done

median() { python3 -c 'import statistics, sys
v = []
for w in sys.argv[1:]:
    try: v.append(float(w.split("(")[0]))
    except ValueError: pass
print(("%.2f" % statistics.median(v)) if v else "fail")' $1; }

ratio() { python3 -c 'import sys
a, b = sys.argv[1], sys.argv[2]
try: print("%.2f" % (float(a) / float(b)))
except Exception: print("-")' "$1" "$2"; }

echo "| backend | metric | burrow (attach) | by hand | burrow/hand |"
echo "|---|---|---|---|---|"
for be in $BACKENDS; do
  command -v "$be" >/dev/null || continue
  for m in c2h h2c_rev pub_h2c pub_c2h; do
    b=$(median "${RES[burrow,$be,$m]:-}") h=$(median "${RES[hand,$be,$m]:-}")
    echo "| $be | $m Gbit/s | $b | $h | $(ratio "$b" "$h") |"
  done
  for m in lat_c2h lat_pub; do
    b=$(median "${RES[burrow,$be,$m]:-}") h=$(median "${RES[hand,$be,$m]:-}")
    echo "| $be | $m connect us (median) | $b | $h | $(ratio "$b" "$h") |"
  done
  echo "| $be | time to network ready, ms | $(median "${RES[burrow,$be,attach_ms]:-}") (attach()) | $(median "${RES[hand,$be,attach_ms]:-}") (polled, coarse) | |"
done
echo
echo "c2h: container -> server on the host's loopback (slirp4netns: 10.0.2.2; pasta: 127.0.0.1 splice);"
echo "h2c_rev: the same connection, reversed (-R); pub_*: host 127.0.0.1 -> published port -> container."
echo "medians of $REPS alternating runs, iperf3 ${SECS}s; connect: median us of 200; raw: "
for k in "${!RES[@]}"; do echo "  $k:${RES[$k]}"; done | sort
