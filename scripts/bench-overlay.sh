#!/bin/sh
# Overlay benchmark (issue 3): plain directory, kernel overlayfs, fuse-overlayfs and burrow's
# FUSE overlay, with a Debian minbase root filesystem as the lower layer, each run inside a
# fresh user namespace of an unprivileged user. Runs are interleaved (rep by rep, workload by
# workload, the config order rotating) and medians are reported, with the ratios
# burrow/fuse-overlayfs and burrow/kernel checked against the targets (printed, not asserted).
#
# A second pair of configs measures burrow's kernel driver (the issue's fourth target: it adds
# nothing measurable over a hand-made kernel overlay mount): the same tar/find/files/write
# workloads inside `burrow run --rootfs D --upper DIR --overlay-driver kernel` (on the container's
# own root) and on a hand-made kernel overlay of D, where D is a copy of the Debian tree owned by
# the benchmark user's mapped ids (burrow must create /etc/hosts in it: the root-owned tree is
# unmapped, hence read-only, inside the user namespace).
#
#   scripts/bench-overlay.sh [--quick]
#
# Run as root: the workloads still run as BENCH_USER (burrow-t1) in a user namespace, root
# only builds the Debian tree once (debootstrap) and drops the page cache
# (echo 3 > /proc/sys/vm/drop_caches) before the cold-cache runs. As a normal user the
# "cold" figures are warm and the script says so.
#
# Environment: REPS (5; --quick: 2), WRITE_MB (1024; --quick: 256), NFILES (10000),
# CFILES (150), BENCH_DIR (/var/tmp/burrow-bench), BENCH_USER (burrow-t1),
# BURROW_OVERLAYFS (release build under CARGO_TARGET_DIR or ./target), FUSE_OVERLAYFS, BURROW (the
# burrow binary next to BURROW_OVERLAYFS; the kernel-driver comparison is skipped without it),
# BURROW_OVERLAYFS_BASE (another burrow-overlayfs build, e.g. of the main branch: adds the config
# burrow-base, interleaved with the others, for a before/after comparison in one run),
# BENCH_CONFIGS (only these configs, e.g. "burrow burrow-base fuse-overlayfs": a fast A/B run),
# BENCH_WORKLOADS (only these of "tar find files write read compile"), BENCH_RAW (set: also
# print every run's figure, not only the medians).
#
# Each run gets a fresh directory under BENCH_DIR/runs, a directory marked `chattr +T` (ext4's
# "top of a directory hierarchy"): ext4 then spreads the run directories over its block groups.
# Without that, every run's files land in the same group, and on ext4 without a journal (this
# machine's disk) inode allocation skips, one by one, every inode freed there in the last
# vm.dirty_expire_centisecs (30 s): a create-10k run right after another run's delete-10k took
# 1.3-4.2 s instead of 0.23 s, whichever config it was.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
QUICK=0
[ "${1:-}" = --quick ] && QUICK=1
if [ $QUICK = 1 ]; then REPS=${REPS:-2}; WRITE_MB=${WRITE_MB:-256}; else REPS=${REPS:-5}; WRITE_MB=${WRITE_MB:-1024}; fi
NFILES=${NFILES:-10000}
CFILES=${CFILES:-150}
BENCH_DIR=${BENCH_DIR:-/var/tmp/burrow-bench}
BENCH_USER=${BENCH_USER:-burrow-t1}
BURROW_OVERLAYFS=${BURROW_OVERLAYFS:-${CARGO_TARGET_DIR:-$HERE/../target}/release/burrow-overlayfs}
BURROW=${BURROW:-$(dirname "$BURROW_OVERLAYFS")/burrow}
FUSE_OVERLAYFS=${FUSE_OVERLAYFS:-$(command -v fuse-overlayfs || echo /usr/bin/fuse-overlayfs)}
IS_ROOT=0
[ "$(id -u)" = 0 ] && IS_ROOT=1

DEBIAN=$("$HERE/mk-debian-rootfs.sh" "$BENCH_DIR/debian-minbase")
LAYER=$BENCH_DIR/layer-$WRITE_MB-$CFILES
DEBIAN_USER=$BENCH_DIR/debian-minbase-user
RUNS=$BENCH_DIR/runs
RESULTS=$BENCH_DIR/results.$$
MOUNTS=$BENCH_DIR/mounts.$$
trap 'rm -f "$RESULTS" "$MOUNTS"' EXIT
mkdir -p "$RUNS"
chattr +T "$RUNS" 2>/dev/null || echo "note: chattr +T $RUNS failed: create-10k may pay for earlier runs' deletes" >&2
[ $IS_ROOT = 1 ] && chmod 1777 "$RUNS"

as_user() {
    if [ $IS_ROOT = 1 ]; then
        setpriv --reuid="$BENCH_USER" --regid="$BENCH_USER" --init-groups "$@"
    else
        "$@"
    fi
}

# The bench layer: a WRITE_MB file to read back and CFILES small C files with a Makefile,
# owned by the benchmark user (it is root in its namespace, so these are not "unmapped").
make_layer() {
    [ -e "$LAYER/.complete" ] && return
    rm -rf "$LAYER"
    mkdir -p "$LAYER/src"
    dd if=/dev/urandom of="$LAYER/big" bs=1M count="$WRITE_MB" status=none
    i=1
    while [ $i -le "$CFILES" ]; do
        cat >"$LAYER/src/f$i.c" <<EOC
#include <stdio.h>
#include <string.h>
struct rec$i { int id; char name[32]; double v[4]; };
static int cmp$i(const void *a, const void *b) { return ((const struct rec$i *)a)->id - ((const struct rec$i *)b)->id; }
int work$i(int n) {
    struct rec$i r[16];
    for (int k = 0; k < 16; k++) { r[k].id = (k * 7 + n) % 16; snprintf(r[k].name, sizeof r[k].name, "r%d", k); r[k].v[0] = k * 1.5; }
    qsort(r, 16, sizeof r[0], cmp$i);
    return r[0].id + (int)strlen(r[1].name);
}
EOC
        i=$((i + 1))
    done
    {
        echo "OBJS = \$(patsubst %.c,%.o,\$(wildcard f*.c))"
        echo "all: \$(OBJS)"
        echo "%.o: %.c"
        printf '\t$(CC) -O1 -c -o $@ $<\n'
    } >"$LAYER/src/Makefile"
    # Every f$i.c needs stdlib.h for qsort: keep the compiler quiet and honest.
    sed -i '1i #include <stdlib.h>' "$LAYER/src/"f*.c
    touch "$LAYER/.complete"
    [ $IS_ROOT = 1 ] && chown -R "$BENCH_USER:" "$LAYER"
    return 0
}

# The Debian tree again, owned by the benchmark user's ids as its user namespace maps them
# (0 -> the user, N -> subordinate id N-1), for the kernel-driver comparison.
make_user_tree() {
    [ -e "$DEBIAN_USER/.complete" ] && return 0
    [ $IS_ROOT = 1 ] || return 1
    rm -rf "$DEBIAN_USER"
    cp -a "$DEBIAN" "$DEBIAN_USER"
    python3 - "$DEBIAN_USER" "$(id -u "$BENCH_USER")" "$(id -g "$BENCH_USER")" \
        "$(awk -F: -v u="$BENCH_USER" '$1 == u {print $2; exit}' /etc/subuid)" \
        "$(awk -F: -v u="$BENCH_USER" '$1 == u {print $2; exit}' /etc/subgid)" <<'EOP'
import os, stat, sys
root, uid, gid, subuid, subgid = sys.argv[1], *map(int, sys.argv[2:])
def shift(i, own, sub):
    return own if i == 0 else sub + i - 1
for d, dirs, files in os.walk(root):
    # Directories are visited as d; os.walk lists symlinks to directories with them.
    links = [os.path.join(d, n) for n in dirs if os.path.islink(os.path.join(d, n))]
    for p in [d] + [os.path.join(d, n) for n in files] + links:
        st = os.lstat(p)
        os.lchown(p, shift(st.st_uid, uid, subuid), shift(st.st_gid, gid, subgid))
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(p, stat.S_IMODE(st.st_mode))  # chown cleared the set-id bits
EOP
    touch "$DEBIAN_USER/.complete"
}

run_one() { # CONFIG WORKLOAD
    RUN=$RUNS/run.$(date +%s%N)
    mkdir -p "$RUN"
    [ $IS_ROOT = 1 ] && chown "$BENCH_USER:" "$RUN"
    case $2 in
        tar|find) if [ $IS_ROOT = 1 ]; then sync; echo 3 >/proc/sys/vm/drop_caches; fi ;;
    esac
    if [ "$1" = burrow-kernel ]; then
        # The workload runs on the container's root; burrow's start-up is outside the timing.
        out=$(as_user env HOME="$(getent passwd "$BENCH_USER" | cut -d: -f6)" "$BURROW" run --rootfs "$DEBIAN_USER" \
            --upper "$RUN/state" --overlay-driver kernel --network none -v "$HERE/bench-lib:/bench:ro" \
            -e WRITE_MB="$WRITE_MB" -e NFILES="$NFILES" -- /bin/sh /bench/overlay-run.sh container "$2" 2>&1) || true
    else
        out=$(as_user env DEBIAN="$DEBIAN" DEBIAN_USER="$DEBIAN_USER" LAYER="$LAYER" RUN="$RUN" WRITE_MB="$WRITE_MB" \
            NFILES="$NFILES" FUSE_OVERLAYFS="$FUSE_OVERLAYFS" BURROW_OVERLAYFS="$BURROW_OVERLAYFS" \
            BURROW_OVERLAYFS_BASE="${BURROW_OVERLAYFS_BASE:-}" \
            unshare --map-root-user --map-auto --mount --propagation private \
            sh "$HERE/bench-lib/overlay-run.sh" "$1" "$2" 2>&1) || true
    fi
    echo "$out" | awk -v c="$1" '/^RESULT / {print c, $2, $3} /^HWM / {print c, "hwm", $2}' >>"$RESULTS"
    echo "$out" | awk -v c="$1" '/^MOUNT / {$1 = ""; print c $0}' >>"$MOUNTS"
    if ! echo "$out" | grep -q '^RESULT '; then
        echo "  $1/$2 failed: $(echo "$out" | grep -v '^RESULT' | head -n 3 | tr '\n' ' ')" >&2
        echo "$1 failed-$2 1" >>"$RESULTS"
    fi
    rm -rf "$RUN"
}

make_layer
CONFIGS="plain kernel"
[ -x "$FUSE_OVERLAYFS" ] && CONFIGS="$CONFIGS fuse-overlayfs"
if [ -x "$BURROW_OVERLAYFS" ]; then CONFIGS="$CONFIGS burrow"; else echo "note: $BURROW_OVERLAYFS missing (cargo build --release)" >&2; fi
[ -n "${BURROW_OVERLAYFS_BASE:-}" ] && CONFIGS="$CONFIGS burrow-base"
MAIN_CONFIGS=$CONFIGS
# wanted CONFIG: CONFIG is in BENCH_CONFIGS (or BENCH_CONFIGS is unset).
wanted() { [ -z "${BENCH_CONFIGS:-}" ] || case " $BENCH_CONFIGS " in *" $1 "*) true ;; *) false ;; esac; }
if ! wanted kernel-u && ! wanted burrow-kernel; then
    :
elif [ ! -x "$BURROW" ]; then
    echo "note: $BURROW missing: no kernel-driver comparison" >&2
elif make_user_tree; then
    CONFIGS="$CONFIGS kernel-u burrow-kernel"
else
    echo "note: $DEBIAN_USER missing (made once as root): no kernel-driver comparison" >&2
fi
keep=
for c in $CONFIGS; do wanted "$c" && keep="$keep $c"; done
CONFIGS=${keep# }
keep=
for c in $MAIN_CONFIGS; do wanted "$c" && keep="$keep $c"; done
MAIN_CONFIGS=${keep# }
WORKLOADS=${BENCH_WORKLOADS:-tar find files write read compile}
: >"$RESULTS"
: >"$MOUNTS"

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
echo "bench-overlay: $(date -u +%FT%TZ), kernel $(uname -r), $(nproc) CPUs, load average $(loadavg), reps=$REPS, write/read=${WRITE_MB} MiB, files=$NFILES, C files=$CFILES$( [ $QUICK = 1 ] && echo ', QUICK')"
[ $IS_ROOT = 1 ] || echo "note: not root: page cache not dropped, *-cold figures are warm"
rep=1
while [ $rep -le "$REPS" ]; do
    for w in $WORKLOADS; do
        # Rotate the config order each rep, so no config always runs first or last.
        set -- $CONFIGS
        k=1
        while [ $k -lt $(( (rep - 1) % $# + 1 )) ]; do c=$1; shift; set -- "$@" "$c"; k=$((k + 1)); done
        for c in "$@"; do
            case $c/$w in kernel-u/read | kernel-u/compile | burrow-kernel/read | burrow-kernel/compile) continue ;; esac
            [ -t 2 ] && printf '  rep %s %-8s %-15s\r' "$rep" "$w" "$c" >&2
            run_one "$c" "$w"
        done
    done
    rep=$((rep + 1))
done
[ -t 2 ] && printf '%60s\r' '' >&2

echo "load average at the end: $(loadavg)"
awk -v configs="$MAIN_CONFIGS" '
function median(key,   n, i, j, t, a) {
    n = split(vals[key], a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    if (n == 0) return -1
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{ key = $1 SUBSEP $2; vals[key] = vals[key] " " $3; if ($2 == "hwm" && $3 > hwm[$1]) hwm[$1] = $3 }
END {
    nc = split(configs, cfg, " ")
    split("tar-cold tar-warm find-cold create-10k delete-10k write-fsync read-warm compile", wl, " ")
    printf "\nmedian wall time, ms\n%-12s", "workload"
    for (i = 1; i <= nc; i++) printf " %15s", cfg[i]
    printf " %11s %11s%s\n", "burrow/fovl", "burrow/kern", (index(configs, "burrow-base") ? "  burrow/base" : "")
    for (w = 1; w <= 8; w++) {
        printf "%-12s", wl[w]
        for (i = 1; i <= nc; i++) { m = median(cfg[i] SUBSEP wl[w]); if (m < 0) printf " %15s", "n/a"; else printf " %15.0f", m }
        b = median("burrow" SUBSEP wl[w]); f = median("fuse-overlayfs" SUBSEP wl[w]); k = median("kernel" SUBSEP wl[w])
        if (b >= 0 && f > 0) printf " %6.2fx %-4s", b / f, (b / f <= 0.7 ? "ok" : "MISS"); else printf " %11s", "n/a"
        if (b >= 0 && k > 0) printf " %6.2fx %-4s", b / k, (b / k <= 2 ? "ok" : "MISS"); else printf " %11s", "n/a"
        z = median("burrow-base" SUBSEP wl[w])
        if (z > 0 && b >= 0) printf " %10.2fx", b / z
        printf "\n"
    }
    printf "\nFUSE server peak RSS (VmHWM, max over runs):"
    for (c in hwm) printf "  %s %.1f MiB%s", c, hwm[c] / 1024, (c == "burrow" ? (hwm[c] < 65536 ? " (ok, < 64 MiB)" : " (MISS, >= 64 MiB)") : "")
    printf "\n"
    for (k2 in vals) { split(k2, p, SUBSEP); if (p[2] ~ /^failed-/) printf "failed runs: %s %s\n", p[1], substr(p[2], 8) }
    print "targets: burrow <= 0.7x fuse-overlayfs and <= 2x kernel on every workload, peak RSS < 64 MiB"
}' "$RESULTS"

# The kernel driver against a hand-made kernel overlay mount of the same tree: "ok" when burrow's
# median lies within the hand-made mount's own spread over the reps (nothing measurable).
grep -q '^burrow-kernel ' "$RESULTS" && awk '
function sorted(key, a,   n, i, j, t) {
    n = split(vals[key], a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n
}
function median(key,   n, a) { n = sorted(key, a); if (n == 0) return -1; return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
{ vals[$1 SUBSEP $2] = vals[$1 SUBSEP $2] " " $3 }
END {
    split("tar-cold tar-warm find-cold create-10k delete-10k write-fsync", wl, " ")
    printf "\nkernel driver: burrow run --overlay-driver kernel vs a hand-made kernel overlay mount (same lower, same disk), median ms\n"
    printf "%-12s %12s %18s %12s %8s\n", "workload", "hand-made", "(min-max)", "burrow run", "ratio"
    for (w = 1; w <= 6; w++) {
        k = "kernel-u" SUBSEP wl[w]; b = "burrow-kernel" SUBSEP wl[w]
        n = sorted(k, a); mb = median(b); mk = median(k)
        if (n == 0 || mb < 0) { printf "%-12s %12s\n", wl[w], "n/a"; continue }
        printf "%-12s %12.0f %18s %12.0f %7.2fx %s\n", wl[w], mk, sprintf("(%d-%d)", a[1], a[n]), mb, mb / mk, (mb <= a[n] ? "ok" : "MISS")
    }
    print "target: the kernel driver adds nothing measurable (ok: burrow run median within the hand-made mount'"'"'s min-max)"
}' "$RESULTS"
if [ -n "${BENCH_RAW:-}" ]; then
    echo "every run, ms, in the order run (BENCH_RAW):"
    awk '$2 != "hwm" { v[$2 " " $1] = v[$2 " " $1] " " $3 } END { for (k in v) printf "  %-28s%s\n", k, v[k] }' "$RESULTS" | sort
fi
if [ -s "$MOUNTS" ]; then
    echo "overlay mounts (per-mount options, type, super options), last run of each:"
    awk '{ c = $1; $1 = ""; line[c] = $0 } END { for (c in line) printf "  %-14s%s\n", c, line[c] }' "$MOUNTS"
fi
