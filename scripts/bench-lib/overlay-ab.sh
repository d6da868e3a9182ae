#!/bin/sh
# Quick interleaved A/B of burrow-overlayfs builds on one workload (not a replacement for
# bench-overlay.sh: no cache drop, no other configs). Each run is a fresh mount in a fresh
# `unshare -rm` namespace over the bench's Debian tree; the builds alternate run by run.
#
#   scripts/bench-lib/overlay-ab.sh WORKLOAD REPS BIN...
#       WORKLOAD: delete (10,000 files made untimed, then rm -rf timed) | create | find | tar
#                 (find and tar: fresh mount, the host's page cache warm)
# RUNS (default /var/tmp/burrow-bench/runs) holds the run directories: RUNS=/dev/shm/DIR puts
# the upper on tmpfs, out of reach of ext4's inode allocation (see benchmarks-overlay-speed.md).
# Prints "BIN ms server-cpu-ms" per run (CPU time of all the server's threads, from
# /proc/PID/task/*/schedstat: nanoseconds, not the 10 ms ticks of /proc/PID/stat).
# Run it under the bench lock: flock /var/tmp/bench.lock scripts/bench-lib/overlay-ab.sh ...
set -eu
WL=$1; REPS=$2; shift 2
LOWER=${DEBIAN:-/var/tmp/burrow-bench/debian-minbase}
RUNS=${RUNS:-/var/tmp/burrow-bench/runs}
mkdir -p "$RUNS"
for _ in $(seq "$REPS"); do
    for BIN in "$@"; do
        D=$(mktemp -d "$RUNS/ab.XXXXXX")
        mkdir "$D/upper" "$D/work" "$D/mnt"
        export BIN D LOWER WL
        unshare -rm sh -c '
            "$BIN" -f -o "lowerdir=$LOWER,upperdir=$D/upper,workdir=$D/work" "$D/mnt" >"$D/log" 2>&1 &
            PID=$!
            until [ "$(stat -f -c %t "$D/mnt")" = 65735546 ]; do sleep 0.01; done
            mk() {
                mkdir "$D/mnt/many"
                perl -e "my \$d = \"x\" x 1024; for my \$i (1..10000) { open(my \$f, \">\", \"\$ARGV[0]/f\$i\") or die; print \$f \$d; close(\$f) }" "$D/mnt/many"
            }
            cpu() { cat /proc/$PID/task/*/schedstat | awk "{s += \$1} END {printf \"%d\", s / 1000000}"; }
            [ "$WL" = delete ] && mk
            c0=$(cpu); t0=$(date +%s%N)
            case $WL in
                delete) rm -rf "$D/mnt/many" ;;
                create) mk ;;
                find) find "$D/mnt" -xdev >/dev/null ;;
                tar) tar -C "$D/mnt" -cf - . 2>/dev/null | cat >/dev/null ;;
            esac
            t1=$(date +%s%N); c1=$(cpu)
            echo "$BIN $(( (t1 - t0) / 1000000 )) $((c1 - c0))"
            umount "$D/mnt"
            wait $PID || true
        '
        rm -rf "$D"
    done
done
