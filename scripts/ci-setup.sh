#!/bin/sh
# Prepare this machine for burrow's test suite. Run as root; idempotent.
#   scripts/ci-setup.sh            install packages, test users, subids, device modes, systemd --user
#   scripts/ci-setup.sh user-manager-stop
# Test users:
#   $BURROW_TEST_USER        (default burrow-t1) with /etc/subuid and /etc/subgid ranges of 65536
#   $BURROW_TEST_USER_NOSUB  (default burrow-t2) with no subordinate ids at all
set -eu
U=${BURROW_TEST_USER:-burrow-t1}
U2=${BURROW_TEST_USER_NOSUB:-burrow-t2}
CG2=$(awk '$3=="cgroup2"{print $2; exit}' /proc/self/mounts)
REL=burrow-ci                       # the cgroup2 directory this script creates and delegates to $U
export DEBIAN_FRONTEND=noninteractive

[ "$(id -u)" = 0 ] || { echo "ci-setup.sh: must run as root" >&2; exit 1; }

mgr_pid() { head -n1 "$CG2/$REL/manager/init.scope/cgroup.procs" 2>/dev/null || true; }

if [ "${1:-}" = user-manager-stop ]; then
  p=$(mgr_pid); [ -n "$p" ] && kill -TERM "$p" && while kill -0 "$p" 2>/dev/null; do sleep 0.1; done
  exit 0
fi
if [ "${1:-}" = __exec_user_manager ]; then
  UIDN=$(id -u "$U")
  exec setpriv --reuid="$UIDN" --regid="$(id -g "$U")" --init-groups --reset-env env \
    HOME="$(getent passwd "$U" | cut -d: -f6)" USER="$U" LOGNAME="$U" \
    PATH=/usr/local/bin:/usr/bin:/bin XDG_RUNTIME_DIR="/run/user/$UIDN" /lib/systemd/systemd --user
fi

# 1. packages (only when something is missing: apt is the slow part)
PKGS="uidmap fuse3 fuse-overlayfs slirp4netns passt iproute2 util-linux procps psmisc python3 systemd dbus
  dbus-user-session busybox-static bubblewrap crun runc podman hyperfine iperf3 debootstrap qemu-system-x86 cpio kmod
  charliecloud-runtime skopeo umoci docker-registry apache2-utils openssl squashfs-tools squashfuse gcc libc6-dev make xz-utils e2fsprogs"
missing=""
for p in $PKGS; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "ci-setup: installing$missing"
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends $missing >/dev/null
fi
# the Debian registry package starts a system daemon on :5000; tests run their own on a free port
systemctl disable --now docker-registry >/dev/null 2>&1 || true

# 2. test users: one with non-overlapping subids, one without any
id -u "$U" >/dev/null 2>&1 || useradd -m -s /bin/bash "$U"
id -u "$U2" >/dev/null 2>&1 || useradd -m -s /bin/bash "$U2"
touch /etc/subuid /etc/subgid
for f in /etc/subuid /etc/subgid; do
  if ! grep -q "^$U:" "$f"; then
    start=$(awk -F: '$2 ~ /^[0-9]+$/ {e=$2+$3; if (e>m) m=e} END {print (m>200000 ? m : 200000)}' /etc/subuid /etc/subgid)
    echo "$U:$start:65536" >> "$f"
  fi
  sed -i "/^$U2:/d" "$f"
done

# 3. device nodes are 0600 on this machine; distributions ship them 0666
chmod 0666 /dev/fuse
[ -c /dev/net/tun ] || { mkdir -p /dev/net; mknod /dev/net/tun c 10 200; }
chmod 0666 /dev/net/tun

# 3b. a runtime-directory name planted by another user (tests/lifecycle.rs): in a world-writable sticky directory
#     like /tmp, burrow-UID of $U owned by $U2. burrow must not be denied service by it.
PLANT=/var/tmp/burrow-ci-planted
install -d -m 1777 "$PLANT"
install -d -m 0700 -o "$U2" -g "$(id -g "$U2")" "$PLANT/burrow-$(id -u "$U")"

# 4. a delegated cgroup2 directory for $U (never touching any cgroup we did not create)
if [ -n "$CG2" ]; then
  for d in "" /manager /tests; do
    mkdir -p "$CG2/$REL$d"
    chown "$U:" "$CG2/$REL$d" "$CG2/$REL$d/cgroup.procs" "$CG2/$REL$d/cgroup.subtree_control" "$CG2/$REL$d/cgroup.threads"
  done
fi

# 5. a real systemd --user for $U. PID 1 is not systemd here, so it runs in a private mount namespace in which
#    /run/systemd/system exists (sd_booted) and cgroup2 is at /sys/fs/cgroup; the host's mounts are untouched.
UIDN=$(id -u "$U"); RT=/run/user/$UIDN
install -d -m 0700 -o "$U" -g "$(id -g "$U")" "$RT"
p=$(mgr_pid)
if [ -n "$CG2" ] && { [ -z "$p" ] || [ "$(cat /proc/$p/comm 2>/dev/null)" != systemd ]; }; then
  rm -f "$RT/bus" "$RT/systemd/private"
  setsid unshare -m --propagation private -- sh -c '
    mount -t tmpfs -o mode=0755,size=1m tmpfs /run/systemd && mkdir /run/systemd/system &&
    mount -t cgroup2 cgroup2 /sys/fs/cgroup && echo $$ > /sys/fs/cgroup/'"$REL"'/manager/cgroup.procs &&
    exec "$0" __exec_user_manager' "$(readlink -f "$0")" </dev/null >>/var/log/burrow-ci-user-manager.log 2>&1 &
  i=0
  until [ -S "$RT/bus" ] && [ -S "$RT/systemd/private" ]; do
    i=$((i+1)); [ $i -lt 150 ] || { echo "ci-setup: systemd --user did not start (see /var/log/burrow-ci-user-manager.log)" >&2; exit 1; }
    sleep 0.1
  done
fi
# 6. shared read-only root filesystems, as an image directory on an HPC system: owned by root, by $U and by $U2,
#    0755, read-only to everyone else, and without /etc/hostname, /etc/hosts, /proc, /tmp... (burrow must make
#    its mount points in the copy-on-write layer), with /lib -> usr/lib as in merged-/usr distributions. tests/failures.rs and tests/nosubids.rs use them.
SHARED=/var/lib/burrow-ci
mk_shared() { # DIR OWNER
  d=$1
  if [ ! -x "$d/bin/busybox" ] || [ ! -L "$d/lib" ] || ! cmp -s /bin/busybox "$d/bin/busybox"; then
    rm -rf "$d" && mkdir -p "$d/bin" "$d/etc" "$d/usr/lib" && ln -s usr/lib "$d/lib"
    cp /bin/busybox "$d/bin/busybox"
    for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$d/bin/$a"; done
    printf 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/:/bin/sh\n' > "$d/etc/passwd"
    printf 'root:x:0:\nuser:x:1000:\n' > "$d/etc/group"
  fi
  chown -R -h "$2" "$d" && chmod -R go-w,a+rX "$d"
}
install -d -m 0755 "$SHARED"
mk_shared "$SHARED/shared-rootfs" root:root
mk_shared "$SHARED/shared-rootfs-$U" "$U:"
mk_shared "$SHARED/shared-rootfs-$U2" "$U2:"
echo "ci-setup: OK users=$U,$U2 subuid=$(grep "^$U:" /etc/subuid) cgroup=$CG2/$REL user-manager=$(mgr_pid)"
