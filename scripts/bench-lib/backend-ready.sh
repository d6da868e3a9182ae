#!/bin/bash
# A network backend started by hand, timed from its exec to its ready signal: the reference for the startup
# cost burrow's networking adds (scripts/bench-net.sh). Usage: backend-ready.sh none|pasta|slirp4netns
# `none` does everything but start the backend (the namespace holder, the fifo/pipe, the kill), so the
# difference of the medians is the backend's own start-up. Same flags as burrow uses.
set -eu
mode=$1
unshare -Urn sleep 30 & holder=$!
trap 'kill $holder 2>/dev/null' EXIT
# The holder must have unshared before the backend looks at /proc/PID/ns.
while [ "$(readlink /proc/$holder/ns/net 2>/dev/null)" = "$(readlink /proc/self/ns/net)" ]; do :; done
dir=$(mktemp -d)
trap 'kill $holder 2>/dev/null; rm -rf "$dir"' EXIT
case $mode in
none) ;;
pasta)
  mkfifo "$dir/pid"
  exec 3<>"$dir/pid"
  pasta --foreground --quiet --config-net --ipv4-only --ns-ifname tap0 --mtu=65520 --address=10.0.2.100 \
    --netmask=24 --gateway=10.0.2.2 --dns-forward=10.0.2.3 -t none -u none --no-map-gw -T none -U none \
    --pid "$dir/pid" "$holder" >/dev/null 2>&1 &
  read -r _ <&3
  kill $! ;;
slirp4netns)
  mkfifo "$dir/ready"
  exec 3<>"$dir/ready"
  slirp4netns --configure --mtu=65520 --disable-host-loopback --enable-sandbox --enable-seccomp \
    --ready-fd=3 "$holder" tap0 >/dev/null 2>&1 &
  read -r -n1 _ <&3
  kill $! ;;
*) echo "usage: $0 none|pasta|slirp4netns" >&2; exit 2 ;;
esac
