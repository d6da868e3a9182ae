#!/bin/sh
# Pull benchmark: a multi-layer image of about 230 MB (a busybox root plus /usr/lib/gcc, /usr/libexec and
# /usr/lib/python3 of the host as three more layers, gzip), pushed to a docker-registry on 127.0.0.1; then,
# interleaved and each into an empty store: `burrow pull`, `podman pull`, `skopeo copy` + `umoci unpack`.
# Then the warm `burrow pull` (image present), and `burrow run IMAGE true` against `burrow run --rootfs TREE
# true` on the same tree (umoci's unpack of the image).
#
#   sudo scripts/bench-pull.sh [-n ROUNDS] [-q] [--burrow PATH] [--user USER] [--json FILE]
#
#   -n ROUNDS      cold pulls per tool (default 5); warm pulls and runs: 6x as many
#   -q             quick: 2 cold rounds
#   --burrow PATH  burrow binary (default $BURROW, else target/release/burrow, else $CARGO_TARGET_DIR/release)
#   --user USER    the unprivileged user every tool runs as (default $BURROW_TEST_USER or burrow-t1)
#   --json FILE    also write the samples as JSON
#
# Targets (issue 10): cold burrow pull <= 0.7x podman's; warm pull <= 50 ms; run of a pulled image <= 1 ms
# more than --rootfs of the same tree. Peak RSS of each cold pull is reported (wait4's ru_maxrss: the largest
# process of the tool's tree). The image layout is built once into /var/tmp/burrow-bench/pull-oci.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(dirname "$HERE")
ROUNDS=5
USER_NAME=${BURROW_TEST_USER:-burrow-t1}
BURROW_BIN=${BURROW:-}
JSON=""
die() { echo "bench-pull: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    -n) [ $# -ge 2 ] || die "-n needs a number"; ROUNDS=$2; shift 2 ;;
    -q) ROUNDS=2; shift ;;
    --burrow) [ $# -ge 2 ] || die "--burrow needs a path"; BURROW_BIN=$2; shift 2 ;;
    --user) [ $# -ge 2 ] || die "--user needs a name"; USER_NAME=$2; shift 2 ;;
    --json) [ $# -ge 2 ] || die "--json needs a file"; JSON=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
case $ROUNDS in ''|*[!0-9]*|0) die "-n wants a positive number, not '$ROUNDS'" ;; esac
[ "$(id -u)" = 0 ] || die "run as root (every tool then runs as $USER_NAME)"
if [ -z "$BURROW_BIN" ]; then
  for c in "$TOP/target/release/burrow" "${CARGO_TARGET_DIR:-/nonexistent}/release/burrow"; do
    [ -x "$c" ] && BURROW_BIN=$c && break
  done
fi
[ -n "$BURROW_BIN" ] && [ -x "$BURROW_BIN" ] || die "no burrow binary: cargo build --release, or --burrow PATH"
for t in docker-registry skopeo umoci podman python3; do command -v $t >/dev/null || die "$t missing (scripts/ci-setup.sh)"; done
id "$USER_NAME" >/dev/null 2>&1 || die "no user $USER_NAME (scripts/ci-setup.sh creates it)"

CACHE=/var/tmp/burrow-bench
LAYOUT=$CACHE/pull-oci
mkdir -p "$CACHE"
if [ ! -e "$LAYOUT/.complete" ]; then
  echo "bench-pull: building the image layout in $LAYOUT (once)"
  rm -rf "$LAYOUT" "$CACHE/pull-bb"
  sh "$HERE/mk-busybox-rootfs.sh" "$CACHE/pull-bb" >/dev/null
  python3 "$HERE/bench-lib/pull_image.py" "$LAYOUT" "$CACHE/pull-bb" /usr/lib/gcc /usr/libexec /usr/lib/python3
  touch "$LAYOUT/.complete"
fi
chmod -R a+rX "$LAYOUT"

WORK=$(mktemp -d /var/tmp/burrow-bench-pull.XXXXXX)
chmod 0755 "$WORK"
chown "$USER_NAME:" "$WORK"
REG_PID=""
cleanup() {
  [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null
  as_user podman --root "$WORK/podman/root" --runroot "$WORK/podman/run" system migrate >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
UHOME=$(getent passwd "$USER_NAME" | cut -d: -f6)
as_user() {
  setpriv --reuid="$USER_NAME" --regid="$(id -g "$USER_NAME")" --init-groups --reset-env env \
    HOME="$UHOME" USER="$USER_NAME" LOGNAME="$USER_NAME" PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
    XDG_RUNTIME_DIR="$WORK/xdg" "$@"
}
# exec: `as_user_exec CMD &` makes CMD itself the background job, so that $! is its pid (for the cleanup).
as_user_exec() {
  exec setpriv --reuid="$USER_NAME" --regid="$(id -g "$USER_NAME")" --init-groups --reset-env env \
    HOME="$UHOME" USER="$USER_NAME" LOGNAME="$USER_NAME" PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin "$@"
}
as_user mkdir -m 0700 "$WORK/xdg"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$WORK/registry.yml" <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/registry
http:
  addr: 127.0.0.1:$PORT
YML
chown "$USER_NAME:" "$WORK/registry.yml"
as_user_exec docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
REG_PID=$!
i=0
until python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT),0.2)" 2>/dev/null; do
  i=$((i+1)); [ $i -lt 100 ] || die "docker-registry did not start: $(cat "$WORK/registry.log")"; sleep 0.1
done
IMAGE=127.0.0.1:$PORT/bench/pull:1
as_user skopeo copy -q --dest-tls-verify=false "oci:$LAYOUT:1" "docker://$IMAGE"
echo "bench-pull: $(uptime | sed 's/.*load/load/'); burrow $BURROW_BIN; image $IMAGE ($(du -sh "$LAYOUT/blobs" | cut -f1) compressed)"

cat > "$WORK/cases.sh" <<SH
# one case: prepare (untimed) or run (timed); runs as $USER_NAME
set -eu
W=$WORK; I=$IMAGE; B=$BURROW_BIN
case "\$1:\$2" in
  prep:burrow-cold) rm -rf \$W/store-cold ;;
  run:burrow-cold) \$B pull -q --tls-verify=false --store \$W/store-cold \$I >/dev/null ;;
  prep:podman-cold) podman --root \$W/podman/root --runroot \$W/podman/run unshare rm -rf \$W/podman/root \$W/podman/run 2>/dev/null || rm -rf \$W/podman 2>/dev/null || true ;;
  run:podman-cold) podman --root \$W/podman/root --runroot \$W/podman/run --storage-driver overlay pull -q --tls-verify=false \$I >/dev/null ;;
  prep:skopeo-umoci) rm -rf \$W/oci \$W/bundle ;;
  run:skopeo-umoci) skopeo copy -q --src-tls-verify=false docker://\$I oci:\$W/oci:img && umoci unpack --rootless --image \$W/oci:img \$W/bundle >/dev/null ;;
  prep:burrow-warm|prep:run-image|prep:run-rootfs) ;;
  run:burrow-warm) \$B pull -q --tls-verify=false --store \$W/store-warm \$I >/dev/null ;;
  run:run-image) \$B run --network none --store \$W/store-warm \$I true ;;
  run:run-rootfs) \$B run --network none --rootfs \$W/tree -- true ;;
  *) echo "no case \$2" >&2; exit 2 ;;
esac
SH
chmod a+r "$WORK/cases.sh"
# The warm store and the --rootfs tree (the same image, unpacked by umoci) exist before their rows.
as_user "$BURROW_BIN" pull -q --tls-verify=false --store "$WORK/store-warm" "$IMAGE" >/dev/null
as_user skopeo copy -q --src-tls-verify=false "docker://$IMAGE" "oci:$WORK/oci-tree:img"
as_user umoci unpack --rootless --image "$WORK/oci-tree:img" "$WORK/tree-bundle" >/dev/null
ln -s "$WORK/tree-bundle/rootfs" "$WORK/tree"

USER_NAME=$USER_NAME WORK=$WORK UHOME=$UHOME python3 "$HERE/bench-lib/pull_bench.py" "$ROUNDS" "$JSON"
