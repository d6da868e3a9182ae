#!/bin/bash
# Network benchmark (not a timed test). Run as root (it re-executes itself as BURROW_TEST_USER,
# default burrow-t1, with that user's runtime dir and bus) or directly as an unprivileged user:
#   sudo BURROW=<release burrow> NET_LIB_BIN=<net_lib test binary> scripts/bench-net.sh [-q]
#   -q: quick (SECS=2, REPS=2, STARTUP_RUNS=10)
# For each backend (slirp4netns, pasta) and each path (the container reaching a server on the
# host's loopback; the host reaching a server in the container through a published port):
# iperf3 in both directions and the median TCP connect time, once with the backend attached by
# burrow's library (burrow::net::attach) and once started by hand with the same flags; the ratio
# burrow/hand is printed (target >= 0.95). Also the time attach() takes (target: networking adds
# <= 10 ms to startup). Only loopback and the backends' internal addresses carry traffic.
#
# Rows: the real `burrow run --network BACKEND --allow-host-loopback -p ...` (clients and servers
# inside the container, host root; published ports through burrow's forwarder with slirp4netns), the
# same with `--port-handler BACKEND` (the backend's own forwarding: add_hostfwd, pasta's -t), `podman run` with the same backend (private storage and
# runtime dir, --runtime runc; a backend podman cannot run is printed and skipped), and the
# startup cost: `burrow run --network none|slirp4netns|pasta -- /bin/true`, interleaved through
# scripts/benchlib.py (target: each backend adds <= 10 ms to the median).
#
# Env: SECS (iperf3 seconds, default 3), REPS (repetitions, default 3), BACKENDS (default "slirp4netns pasta"),
#      NET_LIB_BIN (the net_lib test binary; built with cargo if unset; rows skipped if that fails),
#      BURROW (release burrow binary; default $CARGO_TARGET_DIR/release/burrow, else target/release),
#      STARTUP_RUNS (interleaved runs per startup case, default 20), SKIP_PODMAN=1, SKIP_LIB=1,
#      ROWS (which rows run, default "run runhf lib hand podman"; e.g. ROWS="run hand" REPS=10 for a
#      tighter burrow/by-hand comparison), SKIP_STARTUP=1.
# To add rows: call `drive LABEL BACKEND "ADDR..." PREFIX...` where PREFIX runs `bash -c ...` inside
# the container or namespace; add LABEL to the table printer at the end.
set -uo pipefail   # no -e: one failed measurement prints "fail", the rest still runs
if [ "${1:-}" = -q ]; then SECS=${SECS:-2} REPS=${REPS:-2} STARTUP_RUNS=${STARTUP_RUNS:-10}; shift; fi
[ $# = 0 ] || { echo "usage: $0 [-q] (settings through the environment, see the top of $0)" >&2; exit 2; }
SECS=${SECS:-3}
REPS=${REPS:-3}
STARTUP_RUNS=${STARTUP_RUNS:-20}   # burrow and by-hand runs alternate REPS times; the median is printed
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

if [ -z "${BURROW:-}" ]; then
  BURROW=$ROOT/target/release/burrow
  [ -e "$BURROW" ] || [ -z "${CARGO_TARGET_DIR:-}" ] || BURROW=$CARGO_TARGET_DIR/release/burrow
fi
ROWS=" ${ROWS:-run runhf lib hand podman} "
row() { [[ $ROWS == *" $1 "* ]]; }

if [ -z "${NET_LIB_BIN:-}" ] && [ -z "${SKIP_LIB:-}" ] && row lib && command -v cargo >/dev/null; then
  NET_LIB_BIN=$(cd "$ROOT" && cargo test --test net_lib --no-run 2>&1 | sed -n 's/.*Executable.*(\(.*\))/\1/p' | tail -1)
fi
if [ "$(id -u)" = 0 ]; then   # root only picks the user; everything below runs as that user
  U=${BURROW_TEST_USER:-burrow-t1}
  UIDN=$(id -u "$U") || { echo "no user $U (scripts/ci-setup.sh creates burrow-t1)" >&2; exit 2; }
  rm -rf "$WORK"; trap - EXIT
  exec setpriv --reuid="$U" --regid="$U" --init-groups --reset-env env HOME="$(getent passwd "$U" | cut -d: -f6)" \
    USER="$U" LOGNAME="$U" PATH=/usr/sbin:/usr/bin:/sbin:/bin XDG_RUNTIME_DIR="/run/user/$UIDN" \
    DBUS_SESSION_BUS_ADDRESS="unix:path=/run/user/$UIDN/bus" SECS="$SECS" REPS="$REPS" BACKENDS="$BACKENDS" \
    STARTUP_RUNS="$STARTUP_RUNS" BURROW="$BURROW" NET_LIB_BIN="${NET_LIB_BIN:-}" SKIP_LIB="${SKIP_LIB:-}" \
    SKIP_PODMAN="${SKIP_PODMAN:-}" ROWS="${ROWS:-}" SKIP_STARTUP="${SKIP_STARTUP:-}" "$0"
fi
for t in iperf3 python3 nsenter unshare; do
  command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 2; }
done
NOTES=()
[ -x "$BURROW" ] || { NOTES+=("burrow run rows skipped: no executable burrow at $BURROW (BURROW=...)"); BURROW=""; }
if [ -n "${SKIP_LIB:-}" ] || [ ! -x "${NET_LIB_BIN:-}" ]; then
  NOTES+=("attach() rows skipped: SKIP_LIB set or no net_lib test binary (NET_LIB_BIN=...)"); NET_LIB_BIN=""
fi

# --- helpers --------------------------------------------------------------------------------
# Median connect time in us over n connects (a pause between them: libslirp listens with a
# backlog of 1, so back-to-back connects to a slirp4netns hostfwd port drop SYNs under load).
CONNECT_PY='
import socket, statistics, sys, time
h, p, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
h = socket.gethostbyname(h)   # once: the name lookup (host.burrow.internal, /etc/hosts) is not the connect
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

GBITS_PY='
import json, sys
try: print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9))
except Exception: print("fail")'
gbits() { timeout $((SECS + 30)) iperf3 -J -t "$SECS" "$@" 2>/dev/null | python3 -c "$GBITS_PY"; } # client args: receiver Gbit/s

# What runs inside every container/namespace (bash -c IN_SH bash SECS PORT CPORT CONNECT_PY GBITS_PY
# ACCEPT_PY ADDR...): the servers for the published ports, then for each ADDR iperf3 to the host's
# server both ways and the connect time ("RESULT ADDR c2h h2c_rev us"), "DONE", then it waits for
# SIGTERM (bash is PID 1 in podman: a trapped TERM is delivered; the servers are killed with it).
# shellcheck disable=SC2016 # expanded by the inner bash
IN_SH='
secs=$1 port=$2 cport=$3 connect_py=$4 gbits_py=$5 accept_py=$6; shift 6
trap "kill \$(jobs -p) 2>/dev/null; exit 0" TERM
iperf3 -s -p 5201 >/dev/null 2>&1 &
python3 -c "$accept_py" 0.0.0.0 5202 >/dev/null 2>&1 &
g() { timeout $((secs + 30)) iperf3 -J -t "$secs" "$@" 2>/dev/null | python3 -c "$gbits_py"; }
for a in "$@"; do
  echo "RESULT $a $(g -c "$a" -p "$port") $(g -c "$a" -p "$port" -R) $(python3 -c "$connect_py" "$a" "$cport" 200)"
done
echo DONE
sleep 600 & wait $!'

# The published ports free again (up to 5 s): podman's rootlessport lets go of them a little after
# `podman run` returned, and burrow binds them for real (a busy port is an error).
FREE_PY='
import socket, sys, time
end = time.time() + 5
for p in sys.argv[1:]:
    while True:
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try: s.bind(("127.0.0.1", int(p))); s.close(); break
        except OSError:
            s.close()
            if time.time() > end: break
            time.sleep(0.05)'

declare -A RES
# drive LABEL BACKEND "ADDR..." CMD...: runs IN_SH through CMD (a prefix that ends where `bash -c`
# goes: nsenter, burrow run, podman run; an executable, not a function, so that $! is the process
# the SIGTERM must reach), records its container->host results, then measures the
# published ports from the host while it still runs, then stops it with SIGTERM.
drive() {
  local label=$1 be=$2 addrs=$3; shift 3
  local out=$WORK/drive.out err=$WORK/drive.err
  : >"$out"
  python3 -c "$FREE_PY" "$PUB_IPERF_PORT" "$PUB_CONNECT_PORT"
  # shellcheck disable=SC2086 # addrs: one word each
  "$@" bash -c "$IN_SH" bash "$SECS" "$HOST_IPERF_PORT" "$HOST_CONNECT_PORT" "$CONNECT_PY" "$GBITS_PY" \
    "$ACCEPT_PY" $addrs >"$out" 2>"$err" &
  local d=$! tag a x y z k
  until grep -q '^DONE' "$out" || ! kill -0 "$d" 2>/dev/null; do sleep 0.05; done
  while read -r tag a x y z; do
    [ "$tag" = RESULT ] || continue
    k=gw; [ "$a" = 127.0.0.1 ] && k=lo   # gw: 10.0.2.2 (host.burrow.internal); lo: pasta's splice
    RES[$label,$be,${k}_c2h]+=" $x"; RES[$label,$be,${k}_h2c_rev]+=" $y"; RES[$label,$be,${k}_lat]+=" $z"
  done <"$out"
  if kill -0 "$d" 2>/dev/null; then
    sleep 0.2
    RES[$label,$be,pub_h2c]+=" "$(gbits -c 127.0.0.1 -p "$PUB_IPERF_PORT")
    RES[$label,$be,pub_c2h]+=" "$(gbits -c 127.0.0.1 -p "$PUB_IPERF_PORT" -R)
    RES[$label,$be,pub_lat]+=" "$(python3 -c "$CONNECT_PY" 127.0.0.1 "$PUB_CONNECT_PORT" 200)
    kill -TERM "$d" 2>/dev/null
    local n=0; while kill -0 "$d" 2>/dev/null && [ $n -lt 100 ]; do sleep 0.05; n=$((n + 1)); done
    kill -0 "$d" 2>/dev/null && { echo "$label $be: still running 5 s after SIGTERM: killed" >&2; kill -KILL "$d"; }
  else
    echo "$label $be: exited before measuring: $(tail -n 3 "$err" | tr '\n' ' ')" >&2
  fi
  wait "$d" 2>/dev/null || true
}

# --- burrow's library ---------------------------------------------------------------------
run_burrow_lib() { # BACKEND: attach through burrow::net, measure, detach
  local be=$1 p; p=$(new_target)
  coproc HOLD { BURROW_NET_BENCH_PID=$p BURROW_NET_BENCH_MODE=$be BURROW_NET_BENCH_ALLOW=1 \
    BURROW_NET_BENCH_PUBLISH=$PUBLISH "$NET_LIB_BIN" --exact bench_attach_and_hold --ignored --nocapture 2>&1; }
  local line=""
  while read -r -u "${HOLD[0]}" line; do case $line in BENCH*) break ;; esac; done
  RES[lib,$be,attach_ms]+=" "$(sed -n 's/.*attach_ms=\([0-9.]*\).*/\1/p' <<<"$line")
  # What the launcher does inside the container after attach (Plan::configure_inside).
  [ "$be" = pasta ] && ns "$p" ip link set tap0 txqueuelen 10000
  drive lib "$be" "$(addrs_for "$be" 10.0.2.2)" nsenter --preserve-credentials -U -n -t "$p"
  eval "exec ${HOLD[1]}>&-"; wait "$HOLD_PID" 2>/dev/null || true
  kill "$p"; wait "$p" 2>/dev/null || true
}
addrs_for() { # BACKEND GATEWAY-NAME: the host-loopback addresses to measure (pasta: also its splice)
  if [ "$1" = pasta ]; then echo "$2 127.0.0.1"; else echo "$2"; fi
}

# --- the real `burrow run` (host root; python3 and iperf3 come from the host's /usr) -----------
run_burrow_run() { # BACKEND [LABEL EXTRA-FLAGS...]
  local be=$1 label=${2:-run}; shift; [ $# = 0 ] || shift
  drive "$label" "$be" "$(addrs_for "$be" host.burrow.internal)" "$BURROW" run --network "$be" --allow-host-loopback \
    -p "127.0.0.1:$PUB_IPERF_PORT:5201" -p "127.0.0.1:$PUB_CONNECT_PORT:5202" "$@" --
}

# --- podman, private storage and runtime dir (its pause process is ours, stopped at exit) --------
PODMAN_ROOTFS=$WORK/podman/rootfs
podman_setup() {
  local P=$WORK/podman
  mkdir -p "$P/xdg" "$P/root" "$P/run" "$PODMAN_ROOTFS"/{usr,etc,proc,dev,sys,tmp,run}
  chmod 0700 "$P/xdg"
  local l; for l in bin sbin lib lib64; do ln -s "usr/$l" "$PODMAN_ROOTFS/$l"; done   # merged /usr
  printf '[storage]\ndriver = "vfs"\ngraphroot = "%s/root"\nrunroot = "%s/run"\n' "$P" "$P" >"$P/storage.conf"
  printf '[engine]\nevents_logger = "file"\ncgroup_manager = "cgroupfs"\n' >"$P/containers.conf"
  PODMAN=(env XDG_RUNTIME_DIR="$P/xdg" CONTAINERS_CONF="$P/containers.conf" CONTAINERS_STORAGE_CONF="$P/storage.conf"
    DBUS_SESSION_BUS_ADDRESS="unix:path=$P/xdg/no-bus" podman --runtime runc)
}
podman_net() { # BACKEND: podman's --network value with the flags burrow uses
  case $1 in
    slirp4netns) echo "slirp4netns:allow_host_loopback=true,mtu=65520" ;;
    pasta) echo "pasta:--mtu,65520,-T,auto,-U,auto" ;;
  esac
}
podman_cmd() { # BACKEND: the podman run prefix (image: an empty root with the host's /usr read-only)
  echo "${PODMAN[@]}" run --rm --network "$(podman_net "$1")" -p "127.0.0.1:$PUB_IPERF_PORT:5201" \
    -p "127.0.0.1:$PUB_CONNECT_PORT:5202" -v /usr:/usr:ro --rootfs "$PODMAN_ROOTFS"
}
podman_cleanup() {
  [ -d "$WORK/podman/xdg" ] || return 0
  local p
  for p in $(pgrep -u "$(id -u)" 2>/dev/null); do
    grep -qsxz "XDG_RUNTIME_DIR=$WORK/podman/xdg" "/proc/$p/environ" && kill "$p" 2>/dev/null
  done
  sleep 0.2
  rm -rf "$WORK/podman" 2>/dev/null || "${PODMAN[@]}" unshare rm -rf "$WORK/podman" 2>/dev/null || true
}
# --- the same backends started by hand with the same flags ---------------------------------
# Polls "$@" until it succeeds; gives up (status 1) when process $1 died or after 10 s.
ready_or_fail() {
  local bp=$1 end=$((SECONDS + 10)); shift
  until "$@"; do
    { kill -0 "$bp" 2>/dev/null && [ "$SECONDS" -lt "$end" ]; } || return 1
    sleep 0.001
  done
}
tap_up() { ns "$1" ip -4 -o addr show dev tap0 2>/dev/null | grep -q 10.0.2.100; }

run_hand() {
  local be=$1 p; p=$(new_target)
  local t0 t1 bp
  python3 -c "$FREE_PY" "$PUB_IPERF_PORT" "$PUB_CONNECT_PORT"
  if [ "$be" = slirp4netns ]; then
    rm -f "$WORK/api.sock"
    t0=$(date +%s%N)
    slirp4netns --configure --mtu=65520 --enable-sandbox --enable-seccomp --api-socket "$WORK/api.sock" \
      "$p" tap0 >"$WORK/slirp.log" 2>&1 & bp=$!; PIDS+=("$bp")
    if ! ready_or_fail "$bp" tap_up "$p"; then
      NOTES+=("by hand: slirp4netns did not get ready: $(tail -n 1 "$WORK/slirp.log")"); kill "$bp"; return
    fi
    t1=$(date +%s%N)
    for spec in ${PUBLISH//,/ }; do
      IFS=: read -r hip hport cport <<<"$spec"
      python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.argv[2].encode()); s.shutdown(1); s.recv(200)' \
        "$WORK/api.sock" "{\"execute\":\"add_hostfwd\",\"arguments\":{\"proto\":\"tcp\",\"host_addr\":\"$hip\",\"host_port\":$hport,\"guest_port\":$cport}}"
    done
    drive hand "$be" 10.0.2.2 nsenter --preserve-credentials -U -n -t "$p"
  else
    rm -f "$WORK/pasta.pid"
    t0=$(date +%s%N)
    pasta --foreground --quiet --config-net --ipv4-only --ns-ifname tap0 --mtu=65520 --address=10.0.2.100 \
      --netmask=24 --gateway=10.0.2.2 --dns-forward=10.0.2.3 -t "127.0.0.1/$PUB_IPERF_PORT:5201" \
      -t "127.0.0.1/$PUB_CONNECT_PORT:5202" -u none -T auto -U auto --pid "$WORK/pasta.pid" "$p" \
      >"$WORK/pasta.log" 2>&1 & bp=$!; PIDS+=("$bp")
    if ! ready_or_fail "$bp" test -s "$WORK/pasta.pid"; then
      NOTES+=("by hand: pasta did not get ready: $(tail -n 1 "$WORK/pasta.log")"); kill "$bp"; return
    fi
    t1=$(date +%s%N)
    drive hand "$be" "$(addrs_for "$be" 10.0.2.2)" nsenter --preserve-credentials -U -n -t "$p"
  fi
  RES[hand,$be,attach_ms]+=" $(( (t1 - t0) / 1000000 ))"
  kill "$bp" "$p"; wait "$bp" "$p" 2>/dev/null || true
}

# Host-side servers for the container-to-host path.
iperf3 -s -B 127.0.0.1 -p "$HOST_IPERF_PORT" >/dev/null 2>&1 & PIDS+=($!)
python3 -c "$ACCEPT_PY" 127.0.0.1 "$HOST_CONNECT_PORT" >/dev/null 2>&1 & PIDS+=($!)
sleep 0.3

declare -A PODMAN_OK
if [ -z "${SKIP_PODMAN:-}" ] && command -v podman >/dev/null && command -v runc >/dev/null; then
  podman_setup
  trap 'podman_cleanup; cleanup' EXIT
  for be in $BACKENDS; do   # probe: a backend podman cannot run is printed and skipped
    # shellcheck disable=SC2046 # podman_cmd: words
    if why=$(timeout 60 $(podman_cmd "$be") /bin/true 2>&1); then PODMAN_OK[$be]=1
    else NOTES+=("$(podman --version) --network $(podman_net "$be"): skipped: $(grep -v 'not a shared mount' <<<"$why" | tail -n 1)"); fi
  done
else
  NOTES+=("podman rows skipped (SKIP_PODMAN set, or podman/runc missing)")
fi

for be in $BACKENDS; do
  command -v "$be" >/dev/null || { NOTES+=("$be not installed: skipped"); continue; }
  for _ in $(seq "$REPS"); do   # the rows alternate, REPS rounds
    [ -z "$BURROW" ] || ! row run || run_burrow_run "$be"
    # The backend's own port path (slirp4netns: add_hostfwd through libslirp; pasta: its -t/-u splice), the
    # alternative to burrow's forwarder.
    [ -z "$BURROW" ] || ! row runhf || run_burrow_run "$be" runhf --port-handler "$be"
    [ -z "$NET_LIB_BIN" ] || ! row lib || run_burrow_lib "$be"
    ! row hand || run_hand "$be"
    # shellcheck disable=SC2046
    [ -z "${PODMAN_OK[$be]:-}" ] || ! row podman || drive podman "$be" 10.0.2.2 $(podman_cmd "$be")
  done
done

# shellcheck disable=SC2086 # $1: the values, one word each
median() { python3 -c 'import statistics, sys
v = []
for w in sys.argv[1:]:
    try: v.append(float(w.split("(")[0]))
    except ValueError: pass
print(("%.2f" % statistics.median(v)) if v else "-")' $1; }

ratio() { python3 -c 'import sys
a, b = sys.argv[1], sys.argv[2]
try: print("%.2f" % (float(a) / float(b)))
except Exception: print("-")' "$1" "$2"; }

# verdict "RUN VALUES" "HAND VALUES": the ratio of medians against 0.95 with a bootstrap 95 % interval
# (2,000 resamples of each row): "met", "NOT met" (the whole interval below 0.95) or "not settled"
# (below 0.95, but the interval reaches it: the rows' own spread is larger than the gap); below 0.95 with
# fewer than 5 runs a row, no verdict.
VERDICT_PY='
import random, statistics, sys
def vals(s):
    out = []
    for w in s.split():
        try: out.append(float(w.split("(")[0]))
        except ValueError: pass
    return out
a, b = vals(sys.argv[1]), vals(sys.argv[2])
r = statistics.median(a) / statistics.median(b)
rng = random.Random(1)
boot = sorted(statistics.median(rng.choices(a, k=len(a))) / statistics.median(rng.choices(b, k=len(b)))
              for _ in range(2000))
lo, hi = boot[50], boot[1949]
if r >= 0.95: word = "met"
elif min(len(a), len(b)) < 5: word = "below, too few runs to judge (REPS>=5)"
else: word = "NOT met" if hi < 0.95 else "not settled"
print("%s (95%% interval %.2f-%.2f, %d/%d runs)" % (word, lo, hi, len(a), len(b)))'

TARGETS=()
echo "| backend | metric | burrow run | run --port-handler BACKEND | attach() | by hand | podman | run/hand |"
echo "|---|---|---|---|---|---|---|---|"
for be in $BACKENDS; do
  command -v "$be" >/dev/null || continue
  for m in gw_c2h gw_h2c_rev lo_c2h lo_h2c_rev pub_h2c pub_c2h gw_lat lo_lat pub_lat; do
    r=$(median "${RES[run,$be,$m]:-}") l=$(median "${RES[lib,$be,$m]:-}")
    h=$(median "${RES[hand,$be,$m]:-}") q=$(median "${RES[podman,$be,$m]:-}") f=$(median "${RES[runhf,$be,$m]:-}")
    [ "$r$f$l$h$q" != "-----" ] || continue
    unit="Gbit/s"; case $m in *_lat) unit="connect us" ;; esac
    x=$(ratio "$r" "$h")
    echo "| $be | $m $unit | $r | $f | $l | $h | $q | $x |"
    if [ "$unit" = "Gbit/s" ] && [ "$x" != - ]; then
      ok=$(python3 -c "$VERDICT_PY" "${RES[run,$be,$m]}" "${RES[hand,$be,$m]}")
      TARGETS+=("target burrow run >= 0.95x hand-started: $be $m: $x ($r / $h Gbit/s): $ok")
    fi
  done
  echo "| $be | time to network ready, ms | | | $(median "${RES[lib,$be,attach_ms]:-}") (attach()) | $(median "${RES[hand,$be,attach_ms]:-}") (polled, coarse) | | |"
done
echo
echo "gw: container -> host.burrow.internal/10.0.2.2 -> server on the host's 127.0.0.1; lo: container's"
echo "127.0.0.1 -> pasta's splice path (-T auto) -> the host's; *_h2c_rev: the same connection, reversed (-R);"
echo "pub_*: host 127.0.0.1 -> published port -> container (pub_c2h: -R): burrow run: burrow's forwarder (splice);"
echo "run --port-handler BACKEND, attach() and by hand: the backend's own (slirp4netns add_hostfwd, pasta -t splice);"
echo "podman: rootlessport."
echo "medians of $REPS alternating runs, iperf3 ${SECS}s; connect: median us of 200. run/hand: burrow run / by hand."
for t in "${TARGETS[@]}"; do echo "$t"; done
for n in "${NOTES[@]}"; do echo "note: $n"; done
echo "raw:"
for k in "${!RES[@]}"; do echo "  $k:${RES[$k]}"; done | sort

# --- startup cost of networking --------------------------------------------------------------
if [ -n "$BURROW" ] && [ -z "${SKIP_STARTUP:-}" ]; then
  echo
  echo "startup: burrow run --network MODE -- /bin/true, $STARTUP_RUNS interleaved runs each"
  set -- python3 "$ROOT/scripts/benchlib.py" -n "$STARTUP_RUNS" --timeout 20 --baseline net-none \
    --case net-none "$BURROW run --network none -- /bin/true"
  # Reference: the backend started by hand with burrow's flags, exec to ready signal, minus the same script
  # without the backend (hand-none): the backend's own start-up, which no launcher can hide completely.
  set -- "$@" --case hand-none "bash $ROOT/scripts/bench-lib/backend-ready.sh none"
  for be in $BACKENDS; do
    command -v "$be" >/dev/null || continue
    set -- "$@" --case "net-$be" "$BURROW run --network $be -- /bin/true" --target "net-$be - net-none <= 10" \
      --case "hand-$be" "bash $ROOT/scripts/bench-lib/backend-ready.sh $be"
  done
  "$@"
fi
