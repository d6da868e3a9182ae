#!/bin/sh
# Runs inside the VM as root (burrow-vm-test.service): starts the test user's manager with the delegation
# drop-in, runs $S/run.sh AS that user inside its manager (a transient service, with the session bus), and
# leaves the output and exit status in the run share, which is a directory of the host.
S=/burrow-vm-share
up() { cut -d' ' -f1 /proc/uptime; }
finish() { echo "$1" > "$S/rc.tmp" && mv "$S/rc.tmp" "$S/rc"; sync; exit 0; }
fail() { echo "vm-test(guest): $*" | tee -a "$S/output" >&2; finish 125; }

up > "$S/boot-to-script"
U=$(cat "$S/user") || fail "no user name in the run share"
UIDN=$(id -u "$U") || fail "test user $U does not exist (run scripts/ci-setup.sh on the host)"
GIDN=$(id -g "$U")
HOMED=$(getent passwd "$U" | cut -d: -f6)
RT=/run/user/$UIDN

# as scripts/ci-setup.sh does on the host: the VM has no udev rules to make them 0666 as distributions do
chmod 0666 /dev/fuse /dev/net/tun || fail "cannot chmod /dev/fuse /dev/net/tun"

# lingering makes logind keep the manager; starting user@UID.service waits until it is up
mkdir -p /var/lib/systemd/linger && touch "/var/lib/systemd/linger/$U"
systemctl start "user@$UIDN.service" || fail "user@$UIDN.service did not start: $(systemctl status "user@$UIDN.service" 2>&1 | tail -n 5 | tr '\n' ' ')"
i=0
until [ -S "$RT/bus" ]; do
  i=$((i + 1)); [ $i -lt 300 ] || fail "no session bus at $RT/bus after 30 s (is dbus-user-session installed?)"
  sleep 0.1
done
up > "$S/user-manager-ready"

# systemd-run expands $ and % in command lines: everything variable lives in run.sh, none on this line
setpriv --reuid="$UIDN" --regid="$GIDN" --init-groups --reset-env env HOME="$HOMED" USER="$U" LOGNAME="$U" \
  PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin XDG_RUNTIME_DIR="$RT" DBUS_SESSION_BUS_ADDRESS="unix:path=$RT/bus" \
  systemd-run --user --wait --pipe --quiet --collect --unit=burrow-vm-test \
    --setenv=XDG_RUNTIME_DIR="$RT" --setenv=DBUS_SESSION_BUS_ADDRESS="unix:path=$RT/bus" \
    /bin/sh "$S/run.sh" </dev/null >>"$S/output" 2>&1
rc=$?
up > "$S/script-end"
finish $rc
