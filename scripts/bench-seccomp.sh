#!/bin/sh
# Per-syscall cost of burrow's default seccomp filter: the escape suite's probe (tests/security/probe.c) makes
# COUNT calls of one syscall with bad arguments inside `burrow run` with the default filter and unconfined,
# rounds interleaved; prints the median ns per call of each and their difference.
#
#   sudo scripts/bench-seccomp.sh [-n ROUNDS] [--count N] [--burrow PATH] [--user USER]
#
# Syscalls measured: close (3), getppid (110), pidfd_open (434). With the searched filter (docs/security.md) every
# number costs about the same; they were the first, middle and last of the former linear chain. x86_64 numbers.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(dirname "$HERE")
ROUNDS=7
COUNT=1000000
USER_NAME=${BURROW_TEST_USER:-burrow-t1}
BURROW_BIN=${BURROW:-}
die() { echo "bench-seccomp: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    -n) ROUNDS=$2; shift 2 ;;
    --count) COUNT=$2; shift 2 ;;
    --burrow) BURROW_BIN=$2; shift 2 ;;
    --user) USER_NAME=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
[ "$(id -u)" = 0 ] || die "run as root: it runs burrow as $USER_NAME"
[ "$(uname -m)" = x86_64 ] || die "the syscall numbers below are x86_64's"
if [ -z "$BURROW_BIN" ]; then
  for c in "$TOP/target/release/burrow" "${CARGO_TARGET_DIR:-/nonexistent}/release/burrow"; do
    [ -x "$c" ] && BURROW_BIN=$c && break
  done
fi
[ -x "$BURROW_BIN" ] || die "no burrow binary (build with cargo build --release, or give --burrow)"
T=$(mktemp -d /var/tmp/burrow-bench-seccomp.XXXXXX)
trap 'rm -rf "$T"' EXIT
gcc -static -O1 -o "$T/probe" "$TOP/tests/security/probe.c"
chmod -R a+rX "$T"
AS_USER="setpriv --reuid=$(id -u "$USER_NAME") --regid=$(id -g "$USER_NAME") --init-groups --reset-env env HOME=/ PATH=/usr/bin:/bin"
echo "bench-seccomp: $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), $ROUNDS rounds of $COUNT calls"
for r in $(seq "$ROUNDS"); do
  for nr in 3 110 434; do
    for mode in default unconfined; do
      # shellcheck disable=SC2086 # AS_USER is a command prefix
      v=$(cd / && $AS_USER "$BURROW_BIN" run --network none --seccomp $mode -- "$T/probe" spin $nr "$COUNT" | awk '{print $3}')
      echo "$nr $mode $v"
    done
  done
done | python3 -c '
import statistics, sys
d = {}
for line in sys.stdin:
    nr, mode, v = line.split()
    d.setdefault((int(nr), mode), []).append(float(v))
for nr in sorted({k[0] for k in d}):
    a, b = statistics.median(d[(nr, "default")]), statistics.median(d[(nr, "unconfined")])
    print(f"syscall {nr:3d}: default {a:7.1f} ns, unconfined {b:7.1f} ns, filter cost {a - b:+6.1f} ns per call")
'
