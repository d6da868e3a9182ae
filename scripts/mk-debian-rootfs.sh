#!/bin/sh
# Build (once) a Debian minbase root filesystem from Debian's packages, for the overlay
# benchmarks and tests that need a realistic tree as a lower layer.
#
#   scripts/mk-debian-rootfs.sh [DEST]          default DEST: /var/tmp/burrow-bench/debian-minbase
#
# Idempotent: when DEST/.burrow-complete exists the script only prints DEST. Needs root
# (debootstrap) and network access to the Debian mirror; env DEBIAN_SUITE (bookworm) and
# DEBIAN_MIRROR (http://deb.debian.org/debian) override the defaults. The tree is made
# world-readable where Debian leaves it so (debootstrap keeps package modes), so an
# unprivileged user can use it as a lower layer; files that are 0600 root stay unreadable to
# that user, which is why the benchmark's tar skips what it cannot read.
set -eu
DEST=${1:-/var/tmp/burrow-bench/debian-minbase}
SUITE=${DEBIAN_SUITE:-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [ -e "$DEST/.burrow-complete" ]; then
    echo "$DEST"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "mk-debian-rootfs: debootstrap needs root; run as root once (the result is cached in $DEST)" >&2
    exit 1
fi
command -v debootstrap >/dev/null || { echo "mk-debian-rootfs: install debootstrap" >&2; exit 1; }

# Build into a sibling directory and rename at the end, so an interrupted run never leaves a
# half-built tree that looks complete.
PARENT=$(dirname "$DEST")
mkdir -p "$PARENT"
chmod 0755 "$PARENT"
TMP="$DEST.partial.$$"
trap 'rm -rf "$TMP"' EXIT INT TERM
debootstrap --variant=minbase "$SUITE" "$TMP" "$MIRROR" >"$PARENT/debootstrap.log" 2>&1 || {
    echo "mk-debian-rootfs: debootstrap failed, see $PARENT/debootstrap.log" >&2
    exit 1
}
# Nothing of the apt cache is needed in a benchmark tree.
rm -rf "$TMP/var/cache/apt/archives/"*.deb
date -u +%FT%TZ >"$TMP/.burrow-complete"
rm -rf "$DEST"
mv "$TMP" "$DEST"
trap - EXIT INT TERM
echo "$DEST"
