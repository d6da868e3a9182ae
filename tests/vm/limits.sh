#!/bin/sh
# Resource-limit enforcement checks of issue 4, meant to run inside the VM of scripts/vm-test.sh (a kernel whose
# cgroup v2 has cpu, memory and pids, delegated to the test user's manager), as the unprivileged test user:
#
#   scripts/vm-test.sh tests/vm/limits.sh                          (BURROW=/path/to/burrow in the environment)
#   LIMITS_RUNNER=systemd-run scripts/vm-test.sh tests/vm/limits.sh   (same checks, systemd-run --user --scope)
#
# Checks: a payload allocating past a 64 MiB limit is OOM-killed (exit 137, stats show the OOM kill); a fork
# loop stops at a limit of 20 processes; a busy loop limited to half a CPU gets 50% +- 15% of one CPU (and a
# control run without a limit gets nearly all of one); peak memory is within 10% of what the payload allocated.
# The payloads are one static C program built here with gcc -static, placed in a busybox-static root
# file system ($ROOTFS, made in a temporary directory) for burrow.
#
# LIMITS_RUNNER=burrow (default) drives: $BURROW run --rootfs $ROOTFS --memory 64m|--pids-limit 20|--cpus 0.5
#   --stats --stats-json FILE -- /bin/payload ...   (JSON keys memory_peak, cpu_user_usec, cpu_system_usec,
#   pids_peak, oom_kills).
# LIMITS_RUNNER=systemd-run drives systemd-run --user --scope -p MemoryMax=64M|TasksMax=20|CPUQuota=50% with a
#   small wrapper inside the scope that writes the same JSON from the scope's cgroup files, so the measurement
#   logic and the VM are proven independently of burrow.
# A missing prerequisite prints SKIP and exits 0, or fails when BURROW_TEST_STRICT=1.
set -u

RUNNER=${LIMITS_RUNNER:-burrow}
MEM_LIMIT_MIB=64
OOM_ALLOC_MIB=200          # well past the limit: must be OOM-killed
PEAK_ALLOC_MIB=48          # below the limit: peak memory must match it within 10%
PIDS_LIMIT=20
CPU_SECONDS=6
FAILS=0

skip() {
  if [ "${BURROW_TEST_STRICT:-0}" = 1 ]; then echo "FAIL: $* (BURROW_TEST_STRICT=1 forbids skipping)"; exit 1; fi
  echo "SKIP: $*"; exit 0
}
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
# json_num KEY FILE: the integer value of a top-level key of a flat JSON object (empty when null or absent)
json_num() { sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\([0-9][0-9]*\).*/\1/p" "$2" 2>/dev/null | head -n 1; }
# within VALUE LOW HIGH (integers)
within() { [ -n "$1" ] && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }

# ---- prerequisites -----------------------------------------------------------------------------------------
case $RUNNER in
  burrow)
    [ -n "${BURROW:-}" ] || skip "BURROW is not set (path of the burrow binary)"
    [ -x "$BURROW" ] || skip "BURROW=$BURROW is not executable" ;;
  systemd-run)
    command -v systemd-run >/dev/null || skip "systemd-run not found" ;;
  *) echo "FAIL: unknown LIMITS_RUNNER=$RUNNER (burrow or systemd-run)"; exit 1 ;;
esac
CG2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)
[ -n "$CG2" ] || skip "no cgroup2 mount"
# the subtree of the user manager must have the controllers: walk up from our cgroup to user@UID.service
d=$CG2$(sed -n 's/^0:://p' /proc/self/cgroup)
while [ "$d" != "$CG2" ] && [ "${d##*/}" != "user@$(id -u).service" ]; do d=${d%/*}; done
for c in cpu memory pids; do
  grep -qw $c "$d/cgroup.controllers" 2>/dev/null ||
    skip "controller $c is not delegated to $d (run me through scripts/vm-test.sh)"
done
[ -n "${DBUS_SESSION_BUS_ADDRESS:-}" ] || skip "no session bus (DBUS_SESSION_BUS_ADDRESS unset)"
command -v gcc >/dev/null || skip "gcc not found (needed to build the payload)"
[ -x /bin/busybox ] || skip "/bin/busybox not found (apt-get install busybox-static)"

T=$(mktemp -d "${TMPDIR:-/tmp}/burrow-limits.XXXXXX") || { echo "FAIL: mktemp"; exit 1; }
trap 'rm -rf "$T"' EXIT
trap 'exit 130' INT TERM

# ---- the payload and the root file system ----------------------------------------------------------------
cat > "$T/payload.c" <<'EOF'
/* alloc MIB: touch MIB MiB in 1 MiB blocks; forks N: fork up to N sleeping children, report how many worked;
 * spin SECONDS: busy-loop, then report own CPU time and wall time in microseconds. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long usec(clockid_t c) {
    struct timespec t;
    clock_gettime(c, &t);
    return t.tv_sec * 1000000LL + t.tv_nsec / 1000;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: payload alloc MIB|forks N|spin SECONDS\n"); return 2; }
    long n = atol(argv[2]);
    if (!strcmp(argv[1], "alloc")) {
        for (long i = 0; i < n; i++) {
            char *p = malloc(1 << 20);
            if (!p) { printf("malloc failed after %ld MiB\n", i); return 1; }
            memset(p, 1, 1 << 20);
            if ((i + 1) % 16 == 0) { printf("allocated %ld MiB\n", i + 1); fflush(stdout); }
        }
        printf("allocated %ld MiB\n", n);
        return 0;
    }
    if (!strcmp(argv[1], "forks")) {
        pid_t kids[4096];
        long ok = 0;
        int err = 0;
        for (; ok < n && ok < 4096; ok++) {
            pid_t p = fork();
            if (p < 0) { err = errno; break; }
            if (p == 0) { pause(); _exit(0); }
            kids[ok] = p;
        }
        printf("forked %ld errno %d (%s)\n", ok, err, err ? strerror(err) : "none");
        for (long i = 0; i < ok; i++) kill(kids[i], SIGKILL);
        while (wait(NULL) > 0) {}
        return 0;
    }
    if (!strcmp(argv[1], "spin")) {
        long long w0 = usec(CLOCK_MONOTONIC), c0 = usec(CLOCK_PROCESS_CPUTIME_ID);
        volatile unsigned long x = 0;
        while (usec(CLOCK_MONOTONIC) - w0 < n * 1000000LL)
            for (int i = 0; i < 100000; i++) x++;
        printf("cpu_usec %lld wall_usec %lld\n", usec(CLOCK_PROCESS_CPUTIME_ID) - c0, usec(CLOCK_MONOTONIC) - w0);
        return 0;
    }
    fprintf(stderr, "payload: unknown mode %s\n", argv[1]);
    return 2;
}
EOF
t0=$(date +%s)
gcc -static -O1 -o "$T/payload" "$T/payload.c" 2>"$T/gcc.err" || { cat "$T/gcc.err"; echo "FAIL: gcc -static"; exit 1; }
echo "limits: payload built in $(($(date +%s) - t0)) s, runner $RUNNER"
ROOTFS=$T/rootfs
mkdir -p "$ROOTFS/bin" "$ROOTFS/dev" "$ROOTFS/proc" "$ROOTFS/sys" "$ROOTFS/tmp" "$ROOTFS/etc"
cp /bin/busybox "$ROOTFS/bin/busybox"
"$ROOTFS/bin/busybox" --install -s "$ROOTFS/bin"
cp "$T/payload" "$ROOTFS/bin/payload"
echo "root:x:0:0:root:/:/bin/sh" > "$ROOTFS/etc/passwd"

# The systemd-run mode's wrapper: runs the payload as a child inside the scope, then writes the scope's
# accounting in the JSON shape of burrow's --stats-json, and a --stats-like line on stderr.
cat > "$T/stats-wrap.sh" <<'EOF'
out=$1; shift
"$@"; rc=$?
cg=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)$(sed -n 's/^0:://p' /proc/self/cgroup)
num() { [ -n "$1" ] && echo "$1" || echo null; }
peak=$(cat "$cg/memory.peak" 2>/dev/null)
user=$(sed -n 's/^user_usec //p' "$cg/cpu.stat" 2>/dev/null)
sys=$(sed -n 's/^system_usec //p' "$cg/cpu.stat" 2>/dev/null)
pids=$(cat "$cg/pids.peak" 2>/dev/null)
oom=$(sed -n 's/^oom_kill //p' "$cg/memory.events" 2>/dev/null)
printf '{"memory_peak": %s, "cpu_user_usec": %s, "cpu_system_usec": %s, "pids_peak": %s, "oom_kills": %s}\n' \
  "$(num "$peak")" "$(num "$user")" "$(num "$sys")" "$(num "$pids")" "$(num "$oom")" > "$out"
echo "stats: memory peak $(num "$peak") bytes, cpu user $(num "$user") us system $(num "$sys") us, oom kills $(num "$oom")" >&2
exit $rc
EOF

# contain KIND VALUE PAYLOAD-ARGS...: run the payload under one limit; sets RC, leaves $T/out, $T/err,
# $T/stats.json. KIND is memory (MiB), pids, cpus (fraction of one CPU) or none.
contain() {
  kind=$1 val=$2; shift 2
  rm -f "$T/stats.json"
  if [ "$RUNNER" = burrow ]; then
    case $kind in
      memory) set -- --memory "${val}m" -- /bin/payload "$@" ;;
      pids) set -- --pids-limit "$val" -- /bin/payload "$@" ;;
      cpus) set -- --cpus "$val" -- /bin/payload "$@" ;;
      none) set -- -- /bin/payload "$@" ;;
    esac
    "$BURROW" run --rootfs "$ROOTFS" --stats --stats-json "$T/stats.json" "$@" >"$T/out" 2>"$T/err"
  else
    case $kind in
      memory) set -- -p "MemoryMax=${val}M" -p OOMPolicy=continue -- "$@" ;;
      pids) set -- -p "TasksMax=$val" -- "$@" ;;
      cpus) set -- -p "CPUQuota=$(awk -v f="$val" 'BEGIN { printf "%d", f * 100 }')%" -- "$@" ;;
      none) set -- -- "$@" ;;
    esac
    # systemd-run --scope execs the command in the scope: its exit status is the wrapper's, the payload's
    systemd-run --user --scope --quiet --collect "$@" >"$T/out" 2>"$T/err"
  fi
  RC=$?
}
# the wrapper goes in front of the payload in systemd-run mode
if [ "$RUNNER" = systemd-run ]; then
  contain_payload() { k=$1 v=$2; shift 2; contain "$k" "$v" /bin/sh "$T/stats-wrap.sh" "$T/stats.json" "$T/payload" "$@"; }
else
  contain_payload() { contain "$@"; }
fi
show() { sed 's/^/    | /' "$T/out" "$T/err" | tail -n 8; }

# ---- 0. the environment: what burrow's systemd manager does, by hand -------------------------------------
# A Delegate=yes scope of the user manager gets the controllers; the process moves into a child cgroup (no
# process may stay in an inner cgroup), the controllers are enabled below, and a leaf takes the limits.
cat > "$T/delegate.sh" <<'EOF'
cg=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)$(sed -n 's/^0:://p' /proc/self/cgroup)
echo "controllers: $(cat "$cg/cgroup.controllers")"
mkdir "$cg/supervisor" "$cg/leaf" && echo $$ > "$cg/supervisor/cgroup.procs" &&
  echo "+cpu +memory +pids" > "$cg/cgroup.subtree_control" &&
  echo 64M > "$cg/leaf/memory.max" && echo 20 > "$cg/leaf/pids.max" && echo "50000 100000" > "$cg/leaf/cpu.max" &&
  echo "leaf: $(cat "$cg/leaf/memory.max") $(cat "$cg/leaf/pids.max") $(cat "$cg/leaf/cpu.max")"
EOF
systemd-run --user --scope --quiet --collect -p Delegate=yes -- /bin/sh "$T/delegate.sh" >"$T/out" 2>"$T/err"
if grep -q '^controllers: .*cpu' "$T/out" && grep -q '^controllers: .*memory' "$T/out" &&
  grep -q '^controllers: .*pids' "$T/out" && grep -qx 'leaf: 67108864 20 50000 100000' "$T/out"; then
  pass "delegation: a Delegate=yes user scope has cpu, memory and pids; a leaf cgroup below it takes the limits"
else
  fail "delegation: a Delegate=yes user scope (systemd-run --user --scope -p Delegate=yes) did not get or pass on cpu, memory, pids"
  show
fi

# ---- 1. memory: OOM kill past the limit --------------------------------------------------------------------
contain_payload memory $MEM_LIMIT_MIB alloc $OOM_ALLOC_MIB
oom=$(json_num oom_kills "$T/stats.json")
# --stats must name the OOM kill with a non-zero count, whatever its exact wording (stderr, or stdout)
oom_text() { grep -Eiq 'oom[^0-9]*[1-9]' "$T/err" "$T/out"; }
if [ $RC = 137 ] && within "$oom" 1 1000000 && oom_text; then
  pass "memory: allocating $OOM_ALLOC_MIB MiB under a $MEM_LIMIT_MIB MiB limit was OOM-killed (exit 137, oom_kills $oom, --stats shows it)"
else
  fail "memory: allocating $OOM_ALLOC_MIB MiB under a $MEM_LIMIT_MIB MiB limit: exit $RC (want 137), oom_kills '${oom}' (want >= 1), --stats shows a non-zero OOM count: $(oom_text && echo yes || echo no)"
  show
fi

# ---- 2. memory: peak accounting ----------------------------------------------------------------------------
contain_payload memory $MEM_LIMIT_MIB alloc $PEAK_ALLOC_MIB
peak=$(json_num memory_peak "$T/stats.json")
want=$((PEAK_ALLOC_MIB * 1048576))
if [ $RC = 0 ] && within "$peak" $((want * 9 / 10)) $((want * 11 / 10)); then
  pass "memory: peak $((peak / 1024)) KiB for $PEAK_ALLOC_MIB MiB allocated (within 10%)"
else
  fail "memory: allocating $PEAK_ALLOC_MIB MiB: exit $RC (want 0), memory_peak '${peak}' bytes (want $want +- 10%)"
  show
fi

# ---- 3. pids: the fork loop stops at the limit -------------------------------------------------------------
contain_payload pids $PIDS_LIMIT forks 200
forked=$(sed -n 's/^forked \([0-9]*\) errno.*/\1/p' "$T/out")
pidspeak=$(json_num pids_peak "$T/stats.json")
if [ $RC = 0 ] && within "$forked" $((PIDS_LIMIT / 2)) $((PIDS_LIMIT - 1)) && grep -q 'errno 11 ' "$T/out" &&
  { [ -z "$pidspeak" ] || within "$pidspeak" "$forked" $PIDS_LIMIT; }; then
  pass "pids: the fork loop stopped at $forked children with EAGAIN under a limit of $PIDS_LIMIT (pids_peak ${pidspeak:-n/a})"
else
  fail "pids: under a limit of $PIDS_LIMIT: exit $RC, forked '${forked}' (want $((PIDS_LIMIT / 2))..$((PIDS_LIMIT - 1)) then EAGAIN), pids_peak '${pidspeak}'"
  show
fi

# ---- 4. cpu: half a CPU, with a control run that shows the measurement sees a whole one --------------------
# The payload's own CPU time over its own wall time is the enforced share. The cgroup's accounting must agree:
# at least the payload's CPU time, and, as the quota holds the whole cgroup, at most 65% of the wall time of
# the whole run (burrow's or the wrapper's start-up is in the cgroup too, and slow under TCG).
ratio_pct() { awk '/^cpu_usec/ { if ($4 > 0) printf "%d", $2 * 100 / $4 }' "$T/out"; }
now_usec() { awk '{ printf "%d", $1 * 1000000 }' /proc/uptime; }
contain_payload none 0 spin 3
free_pct=$(ratio_pct)
w0=$(now_usec)
contain_payload cpus 0.5 spin $CPU_SECONDS
outer=$(($(now_usec) - w0))
lim_pct=$(ratio_pct)
pcpu=$(awk '/^cpu_usec/ { print $2 }' "$T/out")
u=$(json_num cpu_user_usec "$T/stats.json") s=$(json_num cpu_system_usec "$T/stats.json")
cg=""
[ -n "$u" ] && [ -n "$s" ] && cg=$((u + s))
if [ $RC = 0 ] && within "$lim_pct" 35 65 && within "$free_pct" 80 200 &&
  within "$cg" $((${pcpu:-0} * 95 / 100)) $((outer * 65 / 100)); then
  pass "cpu: a busy loop under a limit of 0.5 CPU got ${lim_pct}% of one CPU (${free_pct}% without a limit; cgroup CPU time $((cg / 1000)) ms in a run of $((outer / 1000)) ms)"
else
  fail "cpu: under a limit of 0.5 CPU: exit $RC, busy loop got '${lim_pct}'% (want 35..65), control run without a limit '${free_pct}'% (want >= 80), cgroup CPU time '${cg}' us (want ${pcpu:-?}-5% .. 65% of the run's $outer us)"
  show
fi

if [ $FAILS -gt 0 ]; then echo "limits ($RUNNER): $FAILS check(s) failed"; exit 1; fi
echo "limits ($RUNNER): all checks passed"
