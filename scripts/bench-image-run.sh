#!/bin/sh
# What running an image from the store costs: `burrow run IMAGE /bin/true` against `burrow run --rootfs R --
# /bin/true` on the same tree (issue 10's target: at most 1 ms more, as a difference of medians), and the time of
# `burrow import` of that image into an empty store.
#
#   sudo scripts/bench-image-run.sh [-n RUNS] [-q] [--burrow PATH] [--user USER] [--layers N] [--json FILE]
#
#   -n RUNS        timed runs per case, interleaved (default 30)
#   -q             quick smoke run: 5 runs per case
#   --burrow PATH  burrow binary (default $BURROW, else $CARGO_TARGET_DIR/release/burrow, else target/release)
#   --user USER    unprivileged user everything runs as (default $BURROW_TEST_USER or burrow-t1)
#   --layers N     the image's layer count: the busybox tree, then N-1 one-file layers (default 1; more layers
#                  are more overlay lower directories for the run, which is what this measures)
#   --json FILE    also write every sample and statistic as JSON (scripts/benchlib.py)
#
# The tree is scripts/mk-busybox-rootfs.sh's; the image is an OCI layout written here with python3 (gzip
# layers, owners 0:0), imported with `burrow import` into a private store. Rows: rootfs, image, image-fuse
# (--overlay-driver fuse), import (one import into a fresh store per run).
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(dirname "$HERE")
RUNS=30
USER_NAME=${BURROW_TEST_USER:-burrow-t1}
BURROW_BIN=${BURROW:-}
LAYERS=1
JSON=""
die() { echo "bench-image-run: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    -n) [ $# -ge 2 ] || die "-n needs a number"; RUNS=$2; shift 2 ;;
    -q) RUNS=5; shift ;;
    --burrow) [ $# -ge 2 ] || die "--burrow needs a path"; BURROW_BIN=$2; shift 2 ;;
    --user) [ $# -ge 2 ] || die "--user needs a name"; USER_NAME=$2; shift 2 ;;
    --layers) [ $# -ge 2 ] || die "--layers needs a number"; LAYERS=$2; shift 2 ;;
    --json) [ $# -ge 2 ] || die "--json needs a file"; JSON=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
case $RUNS in ''|*[!0-9]*|0) die "-n wants a positive number, not '$RUNS'" ;; esac
case $LAYERS in ''|*[!0-9]*|0) die "--layers wants a positive number, not '$LAYERS'" ;; esac
[ "$(id -u)" = 0 ] || die "run as root (every tool then runs as $USER_NAME)"
if [ -z "$BURROW_BIN" ]; then
  for b in "${CARGO_TARGET_DIR:-/nonexistent}/release/burrow" "$TOP/target/release/burrow"; do
    [ -x "$b" ] && BURROW_BIN=$b && break
  done
fi
[ -x "${BURROW_BIN:-}" ] || die "no burrow binary: cargo build --release, or pass --burrow PATH"

WORK=$(mktemp -d /tmp/burrow-bench-image.XXXXXX)
chmod 0755 "$WORK"
cp "$BURROW_BIN" "$WORK/burrow" && chmod 0755 "$WORK/burrow"
chown "$USER_NAME:" "$WORK"
UHOME=$(getent passwd "$USER_NAME" | cut -d: -f6)
as_user() {
  setpriv --reuid="$USER_NAME" --regid="$(id -g "$USER_NAME")" --init-groups --reset-env env \
    HOME="$UHOME" USER="$USER_NAME" PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin "$@"
}
cleanup() {
  as_user "$WORK/burrow" prune --store "$WORK/store" >/dev/null 2>&1 || true
  as_user "$WORK/burrow" rmi --store "$WORK/store" localhost/bench:1 >/dev/null 2>&1 || true
  as_user "$WORK/burrow" prune --store "$WORK/store" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

as_user sh "$HERE/mk-busybox-rootfs.sh" "$WORK/rootfs" >/dev/null
as_user python3 - "$WORK/rootfs" "$WORK/layout" "$LAYERS" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile
rootfs, layout, layers = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(f"{layout}/blobs/sha256")
def blob(data):
    d = hashlib.sha256(data).hexdigest()
    open(f"{layout}/blobs/sha256/{d}", "wb").write(data)
    return "sha256:" + d
def zero(ti):
    ti.uid = ti.gid = 0; ti.uname = ti.gname = "root"; return ti
tars = []
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
    t.add(rootfs, arcname=".", filter=zero)
tars.append(buf.getvalue())
for i in range(1, layers):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        data = f"layer {i}\n".encode()
        ti = tarfile.TarInfo(f"etc/layer-{i}"); ti.size = len(data); ti.mode = 0o644
        t.addfile(ti, io.BytesIO(data))
    tars.append(buf.getvalue())
descs = []
for tar in tars:
    z = gzip.compress(tar, compresslevel=6, mtime=0)
    descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": blob(z), "size": len(z)})
arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
config = json.dumps({"architecture": arch, "os": "linux", "config": {"Cmd": ["/bin/true"]},
                     "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(t).hexdigest() for t in tars]}}).encode()
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob(config), "size": len(config)},
    "layers": descs}).encode()
index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
    "digest": blob(manifest), "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "bench:1"}}]}
open(f"{layout}/index.json", "w").write(json.dumps(index))
open(f"{layout}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
PY
as_user "$WORK/burrow" import --store "$WORK/store" -q --name localhost/bench:1 "$WORK/layout"
# The --rootfs row runs the same tree the image holds: the store's single layer when there is one.
TREE="$WORK/rootfs"

B="$WORK/burrow"
set -- --case rootfs "$B run --network none --rootfs $TREE -- /bin/true" \
       --case image "$B run --network none --store $WORK/store localhost/bench:1 /bin/true" \
       --case image-fuse "$B run --network none --overlay-driver fuse --store $WORK/store localhost/bench:1 /bin/true" \
       --case rootfs-fuse "$B run --network none --overlay-driver fuse --rootfs $TREE -- /bin/true" \
       --case import "sh -c '$B prune --store $WORK/s{i} >/dev/null 2>&1; exec $B import -q --store $WORK/s{i} --name b:1 $WORK/layout'"
echo "bench-image-run: $RUNS interleaved runs per case, image of $LAYERS layer(s), as $USER_NAME; load: $(cut -d' ' -f1-3 /proc/loadavg)"
PREFIX="setpriv --reuid=$USER_NAME --regid=$(id -g "$USER_NAME") --init-groups --reset-env env HOME=$UHOME USER=$USER_NAME PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
rc=0
python3 "$HERE/benchlib.py" -n "$RUNS" --prefix "$PREFIX" --baseline rootfs "$@" \
  --target 'image-rootfs<=1' --target 'image-fuse-rootfs-fuse<=1' ${JSON:+--json "$JSON"} || rc=$?
# the import row's stores (their layers belong to subordinate IDs: removed through burrow)
for s in "$WORK"/s*; do
  [ -d "$s" ] || continue
  as_user "$B" rmi --store "$s" b:1 >/dev/null 2>&1 || true
done
exit $rc
