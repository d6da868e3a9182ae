#!/bin/sh
# Warm reads in one interleaved run (issue 12's read-warm target): a `dd bs=1M` of the same
# file on plain ext4, through kernel overlayfs and through FUSE servers, all mounted once in
# one `unshare -rm` namespace of BENCH_USER over the same lower directory. Each file is read
# once untimed on every mount, then REPS times, the config order rotating each rep.
#
#   scripts/bench-lib/read-warm.sh REPS CONFIG...
#       CONFIG: plain | ext4-4k | kernel | NAME=PROGRAM (a FUSE server taking fuse-overlayfs' arguments,
#               e.g. fovl=/usr/bin/fuse-overlayfs burrow=target/release/burrow-overlayfs)
# ext4-4k reads copies of the files on a loop-mounted ext4 image mounted with data=journal,
# which keeps ext4 to 4 KiB folios (ext4_should_enable_large_folio), as the FUSE page cache of
# Linux 6.18 is; plain ext4 caches these files in folios of up to 2 MiB. Made and removed here.
# SIZES (MiB, default "256 1024"): one file of each size in LAYER (default
# /var/tmp/burrow-bench/read-warm, made once, owned by BENCH_USER, default burrow-t1).
# Prints "CONFIG SIZE ms" per timed read (dd's own figure: the copy, without its exec), then
# per size the median of each config, its ratio to plain, and its fastest read.
# Run it as root under the bench lock: flock /var/tmp/bench.lock scripts/bench-lib/read-warm.sh ...
set -eu
SIZES=${SIZES:-256 1024}
LAYER=${LAYER:-/var/tmp/burrow-bench/read-warm}
BENCH_USER=${BENCH_USER:-burrow-t1}
HERE=$(cd "$(dirname "$0")" && pwd)

if [ "${1:-}" != --inner ]; then
    REPS=$1; shift
    mkdir -p "$LAYER"
    for s in $SIZES; do
        [ -s "$LAYER/big-$s" ] || dd if=/dev/urandom of="$LAYER/big-$s" bs=1M count="$s" status=none
    done
    chown -R "$BENCH_USER:" "$LAYER"
    RUN=$(mktemp -d /var/tmp/burrow-bench/read-warm-run.XXXXXX)
    chown "$BENCH_USER:" "$RUN"
    SMALL=
    case " $* " in *" ext4-4k "*)
        SMALL=$RUN/ext4-4k
        mkdir "$SMALL"
        truncate -s "$(du -sm "$LAYER" | awk '{print $1 + 256}')M" "$RUN.img"
        mkfs.ext4 -q -F "$RUN.img"
        mount -o loop,data=journal "$RUN.img" "$SMALL"
        for s in $SIZES; do cp "$LAYER/big-$s" "$SMALL"; done
        sync
        chown -R "$BENCH_USER:" "$SMALL"
        ;;
    esac
    OUT=$RUN.out
    echo "read-warm: $(date -u +%FT%TZ), kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg), reps=$REPS, sizes=$SIZES MiB"
    setpriv --reuid="$BENCH_USER" --regid="$BENCH_USER" --init-groups \
        env SIZES="$SIZES" LAYER="$LAYER" RUN="$RUN" SMALL="$SMALL" \
        unshare --map-root-user --map-auto --mount --propagation private \
        sh "$HERE/read-warm.sh" --inner "$REPS" "$@" | tee "$OUT"
    if [ -n "$SMALL" ]; then umount "$SMALL"; rm -f "$RUN.img"; fi
    rm -rf "$RUN"
    echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    awk '$1 == "READ" { v[$3 " " $2] = v[$3 " " $2] " " $4; if (!seen[$2]++) order[++n] = $2 }
    function sorted(s, a,   k, i, j, t) {
        k = split(s, a, " ")
        for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
        return k
    }
    function median(s,   a, k) { k = sorted(s, a); return (k % 2) ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2 }
    function least(s,   a) { sorted(s, a); return a[1] }
    END {
        ns = split(ENVIRON["SIZES"], sz, " ")
        for (s = 1; s <= ns; s++) {
            printf "%s MiB, median ms (ratio to plain), min:", sz[s]
            p = median(v[sz[s] " plain"])
            for (i = 1; i <= n; i++) {
                m = median(v[sz[s] " " order[i]])
                printf "  %s %.1f", order[i], m
                if (p > 0) printf " (%.2f)", m / p
                printf " %.1f", least(v[sz[s] " " order[i]])
            }
            printf "\n"
        }
    }' "$OUT"
    rm -f "$OUT"
    exit 0
fi

# Inside the namespace (root of it, as BENCH_USER).
shift
REPS=$1; shift
PIDS=
cleanup() {
    for m in "$RUN"/*/mnt; do umount "$m" 2>/dev/null || true; done
    for p in $PIDS; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
# path CONFIG: the directory that CONFIG reads from (mounting it the first time).
for c in "$@"; do
    name=${c%%=*}
    D=$RUN/$name
    mkdir -p "$D/upper" "$D/work" "$D/mnt"
    case $c in
        plain | ext4-4k) ;;
        kernel) mount -t overlay -o "lowerdir=$LAYER,upperdir=$D/upper,workdir=$D/work,userxattr" overlay "$D/mnt" ;;
        *=*)
            "${c#*=}" -f -o "lowerdir=$LAYER,upperdir=$D/upper,workdir=$D/work" "$D/mnt" >"$D/log" 2>&1 &
            PIDS="$PIDS $!"
            i=0
            until [ "$(stat -f -c %t "$D/mnt")" = 65735546 ]; do
                i=$((i + 1))
                [ $i -le 1000 ] || { echo "FAIL $name did not mount: $(head -c 300 "$D/log")"; exit 1; }
                sleep 0.01
            done
            ;;
        *) echo "FAIL unknown config $c"; exit 1 ;;
    esac
done
dir() { case $1 in plain) echo "$LAYER" ;; ext4-4k) echo "$SMALL" ;; *) echo "$RUN/$1/mnt" ;; esac; }
# dd's own figure, "N bytes (...) copied, S s, R GB/s", in ms.
ddms() { LC_ALL=C dd if="$1" of=/dev/null bs=1M 2>&1 | awk '/copied/ { for (i = 1; i <= NF; i++) if ($i == "s,") printf "%.2f", $(i - 1) * 1000 }'; }
for c in "$@"; do
    for s in $SIZES; do ddms "$(dir "${c%%=*}")/big-$s" >/dev/null; done
done
CONFIGS=$*
rep=1
while [ "$rep" -le "$REPS" ]; do
    set -- $CONFIGS
    k=1
    while [ $k -lt $(( (rep - 1) % $# + 1 )) ]; do c=$1; shift; set -- "$@" "$c"; k=$((k + 1)); done
    for c in "$@"; do
        name=${c%%=*}
        for s in $SIZES; do echo "READ $name $s $(ddms "$(dir "$name")/big-$s")"; done
    done
    rep=$((rep + 1))
done
