#!/bin/sh
# One benchmark run inside a fresh user+mount namespace (started by bench-overlay.sh):
# mount CONFIG, run WORKLOAD, print "RESULT <name> <ms>" lines and, for FUSE servers,
# "HWM <kB>" (VmHWM: peak resident set size), then unmount.
#
#   overlay-run.sh CONFIG WORKLOAD      CONFIG: plain|kernel|fuse-overlayfs|burrow|burrow-base|kernel-u|container
#                                       WORKLOAD: tar|find|files|write|read|compile
# Environment (set by bench-overlay.sh): DEBIAN (lower rootfs), LAYER (bench layer with the
# big file and C sources), RUN (empty scratch dir on the benchmark's disk), WRITE_MB, NFILES,
# FUSE_OVERLAYFS, BURROW_OVERLAYFS, BURROW_OVERLAYFS_BASE; DEBIAN_USER (a copy of DEBIAN owned by the benchmark user's
# mapped ids) for kernel-u.
# kernel-u is the hand-made kernel overlay mount over DEBIAN_USER, the workload run chrooted into
# it with this script bound in; container is the same workload run inside `burrow run --rootfs
# DEBIAN_USER --overlay-driver kernel` on its own root (no mount here). Both run the tree's own
# tar, find, perl, rm and dd: the pair measures what burrow's kernel driver adds. Both print a
# "MOUNT" line with the overlay's options as /proc/self/mountinfo shows them.
set -eu
CONFIG=$1
WORKLOAD=$2

now_ns() { date +%s%N; }
# timed NAME CMD...: runs CMD, prints the wall time in ms
timed() {
    name=$1; shift
    t0=$(now_ns)
    "$@"
    t1=$(now_ns)
    echo "RESULT $name $(( (t1 - t0) / 1000000 ))"
}

# Lower layers: tar/find walk the Debian tree only; the other workloads also get the bench
# layer on top (1 GiB file, C sources).
case $WORKLOAD in
    tar|find) LOWERS=${DEBIAN:-} ;;
    *) LOWERS=${LAYER:-}:${DEBIAN:-} ;;
esac

# "MOUNT <per-mount options> <fs type> <super options>" of the mount at $1.
mount_line() {
    awk -v m="$1" '$5 == m { for (i = 7; $i != "-"; i++); print "MOUNT", $6, $(i + 1), $(i + 3) }' /proc/self/mountinfo | tail -n 1
}

[ "$CONFIG" = container ] || mkdir -p "$RUN/upper" "$RUN/work" "$RUN/mnt"
PID=
case $CONFIG in
    container)
        # Inside burrow run (or the chroot of kernel-u): the root is the overlay, this script is
        # bound in.
        R=/; W=
        [ -r /proc/self/mountinfo ] && mount_line /
        ;;
    kernel-u)
        mount -t overlay -o "lowerdir=$DEBIAN_USER,upperdir=$RUN/upper,workdir=$RUN/work,userxattr" overlay "$RUN/mnt"
        mount_line "$RUN/mnt"
        mkdir "$RUN/mnt/bench"
        mount --bind "$(cd "$(dirname "$0")" && pwd)" "$RUN/mnt/bench"
        # Device nodes do not open on a mount made in a user namespace: the host's /dev, as in
        # the container.
        mount --rbind /dev "$RUN/mnt/dev"
        chroot "$RUN/mnt" /bin/sh /bench/overlay-run.sh container "$WORKLOAD"
        umount -R "$RUN/mnt"
        exit 0
        ;;
    plain)
        # No overlay: reads from the lower directories themselves, writes to a scratch
        # directory on the same file system as the overlays' upper.
        R=$DEBIAN; W=$RUN/upper
        [ "$WORKLOAD" = tar ] || [ "$WORKLOAD" = find ] || R=$LAYER
        ;;
    kernel)
        mount -t overlay -o "lowerdir=$LOWERS,upperdir=$RUN/upper,workdir=$RUN/work,userxattr" overlay "$RUN/mnt"
        R=$RUN/mnt; W=$RUN/mnt
        ;;
    fuse-overlayfs|burrow|burrow-base)
        prog=$FUSE_OVERLAYFS
        [ "$CONFIG" = burrow ] && prog=$BURROW_OVERLAYFS
        [ "$CONFIG" = burrow-base ] && prog=$BURROW_OVERLAYFS_BASE
        "$prog" -f -o "lowerdir=$LOWERS,upperdir=$RUN/upper,workdir=$RUN/work" "$RUN/mnt" >"$RUN/fuse.log" 2>&1 &
        PID=$!
        i=0
        until [ "$(stat -f -c %t "$RUN/mnt")" = 65735546 ]; do
            i=$((i + 1))
            if [ $i -gt 1000 ] || ! kill -0 $PID 2>/dev/null; then
                echo "FAIL $CONFIG did not mount: $(head -c 300 "$RUN/fuse.log")"
                exit 1
            fi
            sleep 0.01
        done
        R=$RUN/mnt; W=$RUN/mnt
        ;;
    *) echo "FAIL unknown config $CONFIG"; exit 1 ;;
esac

# GNU tar skips reading file data when the archive is /dev/null: pipe it instead. Neither tar nor
# find leaves the overlay's file system (inside a container, / has /proc, /dev... mounted on it).
tar_tree() { tar --one-file-system -C "$1" -cf - . 2>/dev/null | cat >/dev/null || true; }

mk_files() {
    mkdir "$W/many"
    perl -e 'my $d = "x" x 1024; for my $i (1..$ARGV[1]) { open(my $f, ">", "$ARGV[0]/f$i") or die "$!"; print $f $d; close($f) or die "$!" }' "$W/many" "$NFILES"
}

case $WORKLOAD in
    tar)
        # The caller dropped the page cache before this run (when it could): first pass cold.
        timed tar-cold tar_tree "$R"
        timed tar-warm tar_tree "$R"
        ;;
    find) timed find-cold sh -c "find '$R' -xdev >/dev/null 2>&1 || true" ;;
    files)
        timed create-10k mk_files
        timed delete-10k rm -rf "$W/many"
        ;;
    write) timed write-fsync dd if=/dev/zero of="$W/big.out" bs=1M count="$WRITE_MB" conv=fsync status=none ;;
    read | compile) case $CONFIG in container | kernel-u) echo "SKIP $WORKLOAD needs the bench layer"; exit 0 ;; esac ;;
esac
case $WORKLOAD in
    read)
        dd if="$R/big" of=/dev/null bs=1M status=none
        timed read-warm dd if="$R/big" of=/dev/null bs=1M status=none
        ;;
    compile)
        if [ "$CONFIG" = plain ]; then cp -a "$R/src" "$W/src"; S=$W/src; else S=$R/src; fi
        timed compile make -s -C "$S" -j2
        ;;
esac

if [ -n "$PID" ]; then
    echo "HWM $(awk '/^VmHWM/ {print $2}' /proc/$PID/status)"
fi
case $CONFIG in plain | container) ;; *) umount "$RUN/mnt" ;; esac
if [ -n "$PID" ]; then wait $PID || true; fi
