#!/bin/sh
# Startup latency of `/bin/true` in a rootless container: burrow against its peers, on one busybox rootfs.
#
#   sudo scripts/bench-startup.sh [-n RUNS] [-q] [--burrow PATH] [--user USER] [--rootfs DIR]
#                                 [--only NAME,NAME] [--no-cgroup] [--json FILE] [--seed S]
#
#   -n RUNS        timed runs per case, interleaved (default 30)
#   -q             quick smoke run: 5 runs per case
#   --burrow PATH  burrow binary (default $BURROW, else target/release/burrow, else $CARGO_TARGET_DIR/release)
#   --user USER    unprivileged user every tool runs as (default $BURROW_TEST_USER or burrow-t1)
#   --rootfs DIR   use this rootfs instead of building one with mk-busybox-rootfs.sh
#   --only LIST    only the named cases (see docs/benchmarks.md for the names)
#   --no-cgroup    leave out the cgroup rows (burrow-mem, systemd-scope, podman-mem)
#   --json FILE    also write every sample and statistic as JSON
#   --seed S       seed of the per-round shuffle (default: random)
#
# Runs as root only to set the stage; every tool runs as USER through the same `setpriv ... env ...` prefix,
# so that the wrapper's cost is identical for all rows. Root's part:
#   * the harness joins the delegated cgroup2 directory burrow-ci/tests made by ci-setup.sh, so that the user's
#     systemd manager may move its processes into scopes (systemd-run --user --scope, burrow's systemd manager);
#   * on a hybrid cgroup layout the whole harness runs in a private mount namespace in which cgroup2's
#     cgroup.controllers is masked by an empty file (crun refuses hybrid mode otherwise); every row runs in it;
#   * podman gets a private runtime dir, storage (vfs) and containers.conf under the temporary directory, so its
#     pause process is our own and is stopped at the end.
# A row that cannot run prints why and is skipped; the others go on.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(dirname "$HERE")
RUNS=30
USER_NAME=${BURROW_TEST_USER:-burrow-t1}
BURROW_BIN=${BURROW:-}
ROOTFS=""
ONLY=""
CGROUP_ROWS=1
JSON=""
SEED=""

die() { echo "bench-startup: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    -n) [ $# -ge 2 ] || die "-n needs a number"; RUNS=$2; shift 2 ;;
    -q) RUNS=5; shift ;;
    --burrow) [ $# -ge 2 ] || die "--burrow needs a path"; BURROW_BIN=$2; shift 2 ;;
    --user) [ $# -ge 2 ] || die "--user needs a name"; USER_NAME=$2; shift 2 ;;
    --rootfs) [ $# -ge 2 ] || die "--rootfs needs a directory"; ROOTFS=$2; shift 2 ;;
    --only) [ $# -ge 2 ] || die "--only needs a list"; ONLY=",$2,"; shift 2 ;;
    --no-cgroup) CGROUP_ROWS=0; shift ;;
    --json) [ $# -ge 2 ] || die "--json needs a file"; JSON=$2; shift 2 ;;
    --seed) [ $# -ge 2 ] || die "--seed needs a number"; SEED=$2; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
case $RUNS in ''|*[!0-9]*|0) die "-n wants a positive number, not '$RUNS'" ;; esac
ALL="host-true floor floor-subids burrow burrow-unhardened burrow-landlock burrow-rw burrow-single burrow-host burrow-host-homerw burrow-shared burrow-private burrow-first bwrap crun ch-run podman burrow-mem systemd-scope podman-mem
  burrow-exec podman-exec"
for n in $(echo "$ONLY" | tr ',' ' '); do
  case " $ALL " in *" $n "*) ;; *) die "--only: no case named '$n' (cases: $ALL)" ;; esac
done

[ "$(id -u)" = 0 ] || die "run as root: it sets the stage, then runs every tool as $USER_NAME"
id -u "$USER_NAME" >/dev/null 2>&1 || die "user $USER_NAME does not exist (scripts/ci-setup.sh creates it)"

UIDN=$(id -u "$USER_NAME")
GIDN=$(id -g "$USER_NAME")
HOMEU=$(getent passwd "$USER_NAME" | cut -d: -f6)
RT=/run/user/$UIDN
CG2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)
T=$(mktemp -d /tmp/burrow-bench.XXXXXX)
chown "$UIDN:$GIDN" "$T"
ENVP="HOME=$HOMEU USER=$USER_NAME LOGNAME=$USER_NAME PATH=/usr/sbin:/usr/bin:/sbin:/bin"
ENVP="$ENVP XDG_RUNTIME_DIR=$RT DBUS_SESSION_BUS_ADDRESS=unix:path=$RT/bus"
AS_USER="setpriv --reuid=$UIDN --regid=$GIDN --init-groups --reset-env env $ENVP"

cleanup() {
  # the user-namespace keepers started by the burrow-first row (each in a runtime directory of its own under $T)
  for p in $(pgrep -u "$UIDN" -f "__keeper --dir $T/" 2>/dev/null || true); do
    kill "$p" 2>/dev/null || true
  done
  if [ -n "${EXEC_NAME:-}" ]; then
    [ -z "${BURROW_NOTE:-}" ] && $AS_USER "$BURROW_BIN" rm -f "$EXEC_NAME" >/dev/null 2>&1 || true
    $AS_USER sh -c "$PODMAN_BASE rm -f -t 0 $EXEC_NAME" >/dev/null 2>&1 || true
  fi
  # podman's rootless pause process (and anything else podman left) started by our own runs: they are the
  # user's processes whose environment names our private runtime dir (killing by the pause pid file alone once
  # left a pause process behind).
  for p in $(pgrep -u "$UIDN" 2>/dev/null || true); do
    if grep -qsxz "XDG_RUNTIME_DIR=$T/podman/xdg" "/proc/$p/environ"; then
      kill "$p" 2>/dev/null || true
    fi
  done
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the stage -------------------------------------------------------------------------------------------
if [ -z "$ROOTFS" ]; then
  ROOTFS=$T/rootfs
  $AS_USER "$HERE/mk-busybox-rootfs.sh" "$ROOTFS" >/dev/null
fi
ROOTFS=$(cd "$ROOTFS" && pwd)
$AS_USER test -x "$ROOTFS/bin/true" || die "$ROOTFS/bin/true is not executable by $USER_NAME"

# burrow: the binary must be executable by the user (/root is 0700): copy it, and its companion, if not
if [ -z "$BURROW_BIN" ]; then
  BURROW_BIN=$TOP/target/release/burrow
  [ -e "$BURROW_BIN" ] || [ -z "${CARGO_TARGET_DIR:-}" ] || BURROW_BIN=$CARGO_TARGET_DIR/release/burrow
fi
BURROW_NOTE=""
if [ ! -e "$BURROW_BIN" ]; then
  BURROW_NOTE="no burrow binary at $BURROW_BIN (build it: cargo build --release, or pass --burrow PATH)"
elif ! $AS_USER test -x "$BURROW_BIN"; then
  mkdir -p "$T/bin"
  for b in "$BURROW_BIN" "$(dirname "$BURROW_BIN")/burrow-overlayfs"; do
    [ -e "$b" ] && install -m 0755 "$b" "$T/bin/"
  done
  BURROW_BIN=$T/bin/burrow
fi

# crun: the rootless spec of `crun spec --rootless`, running /bin/true on the shared rootfs, no terminal
mkdir -p "$T/crun-bundle" "$T/crun-state"
chown "$UIDN:$GIDN" "$T/crun-bundle" "$T/crun-state"
if $AS_USER sh -c "cd '$T/crun-bundle' && crun spec --rootless" 2>"$T/crun-spec.err"; then
  if python3 - "$T/crun-bundle/config.json" "$ROOTFS" <<'EOF'
import json, sys
path, rootfs = sys.argv[1], sys.argv[2]
with open(path) as f:
    spec = json.load(f)
spec["process"]["terminal"] = False
spec["process"]["args"] = ["/bin/true"]
spec["root"] = {"path": rootfs, "readonly": True}
with open(path, "w") as f:
    json.dump(spec, f, indent=1)
EOF
  then :; else echo "note: could not adjust the crun spec: the crun row will fail"; fi
fi

# podman: private runtime dir (its pause process is then ours), throw-away vfs storage, no journald, and no
# session bus: podman would ask the user's systemd for a podman-pause-*.scope once per pause process, which
# fails here ("resources") and leaves a failed unit behind; no other podman step uses the bus with cgroupfs
P=$T/podman
mkdir -p "$P/xdg" "$P/root" "$P/run"
chmod 0700 "$P/xdg"
printf '[storage]\ndriver = "vfs"\ngraphroot = "%s/root"\nrunroot = "%s/run"\n' "$P" "$P" > "$P/storage.conf"
printf '[engine]\nevents_logger = "file"\ncgroup_manager = "cgroupfs"\n' > "$P/containers.conf"
chown -R "$UIDN:$GIDN" "$P"
PODMAN="XDG_RUNTIME_DIR=$P/xdg CONTAINERS_CONF=$P/containers.conf CONTAINERS_STORAGE_CONF=$P/storage.conf"
PODMAN="$PODMAN DBUS_SESSION_BUS_ADDRESS=unix:path=$P/xdg/no-bus"
PODMAN_BASE="$PODMAN podman --runtime runc"
PODMAN="$PODMAN_BASE run --rm --network none"

# ---- the cases -------------------------------------------------------------------------------------------
want() { [ -z "$ONLY" ] || case $ONLY in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
CASES=$T/cases
: > "$CASES"
case_() {   # NAME COMMAND: one case per line, NAME<TAB>COMMAND
  want "$1" && printf '%s\t%s\n' "$1" "$2" >> "$CASES"
  return 0
}
R=$ROOTFS
case_ host-true "/bin/true"
case_ floor "unshare -Urmpf --mount-proc=$R/proc chroot $R /bin/true"
case_ floor-subids "unshare --map-auto -r -mpf --mount-proc=$R/proc chroot $R /bin/true"
if [ -z "$BURROW_NOTE" ]; then
  case_ burrow "$BURROW_BIN run --network none --rootfs $R -- /bin/true"
  # the same run with every hardening default turned off (docs/security.md): what the defaults cost
  UNHARDENED="--seccomp unconfined --cap-add all --allow-setuid --allow-nested --unmask all"
  case_ burrow-unhardened "$BURROW_BIN run --network none $UNHARDENED --rootfs $R -- /bin/true"
  case_ burrow-landlock "$BURROW_BIN run --network none --landlock --rootfs $R -- /bin/true"
  # like for like with `bwrap --bind R /`: the rootfs writable in place, no copy-on-write layer
  case_ burrow-rw "$BURROW_BIN run --network none --rootfs-rw --rootfs $R -- /bin/true"
  case_ burrow-single "$BURROW_BIN run --network none --userns=single --rootfs $R -- /bin/true"
  # the host-root sandbox: copy-on-write $HOME (the default) against the read-write bind it replaced
  case_ burrow-host "$BURROW_BIN run --network none -- /bin/true"
  case_ burrow-host-homerw "$BURROW_BIN run --network none --home rw -- /bin/true"
  # a shared tree owned by root (ci-setup.sh): mount points made in the copy-on-write layer
  [ ! -d /var/lib/burrow-ci/shared-rootfs ] ||
    case_ burrow-shared "$BURROW_BIN run --network none --rootfs /var/lib/burrow-ci/shared-rootfs -- /bin/true"
  # what the user-namespace keeper saves: the helpers on every run (the rows above join the keeper, which the
  # probe run of the first of them starts when none is running)
  case_ burrow-private "$BURROW_BIN run --network none --userns=private --rootfs $R -- /bin/true"
  # every run a first run: a runtime directory of its own (no keeper yet), so it maps with the helpers and starts
  # a keeper (which exits 5 s later); the NAME=VALUE words go to the prefix's own `env`, no extra exec
  if want burrow-first; then
    i=0
    while [ "$i" -le $((RUNS + 2)) ]; do
      mkdir -m 0700 "$T/first-$i" && chown "$UIDN:$GIDN" "$T/first-$i"
      i=$((i + 1))
    done
  fi
  case_ burrow-first "XDG_RUNTIME_DIR=$T/first-{i} BURROW_KEEPER_IDLE=5 $BURROW_BIN run --network none --rootfs $R -- /bin/true"
fi
case_ bwrap "bwrap --unshare-all --bind $R / --proc /proc --dev /dev /bin/true"
case_ crun "crun --root $T/crun-state run --bundle $T/crun-bundle bench-{i}"
case_ ch-run "ch-run $R -- /bin/true"
case_ podman "$PODMAN --rootfs $R /bin/true"
if [ "$CGROUP_ROWS" = 1 ]; then
  if [ -z "$BURROW_NOTE" ]; then
    case_ burrow-mem "$BURROW_BIN run --network none --memory 64m --limits best-effort --cgroup-manager systemd --rootfs $R -- /bin/true"
  fi
  case_ systemd-scope "systemd-run --user --scope -q /bin/true"
  case_ podman-mem "$PODMAN --memory 64m --rootfs $R /bin/true"
fi
# exec into a running container (issue 13: burrow exec <= 5 ms median, <= 0.1x podman exec): one detached
# container of each, started here and removed by the cleanup
EXEC_NAME=bench-exec-$$
if want burrow-exec && [ -z "$BURROW_NOTE" ]; then
  if $AS_USER "$BURROW_BIN" run -d --name "$EXEC_NAME" --network none --rootfs "$R" -- /bin/sleep 3600 >/dev/null 2>"$T/burrow-exec.err"; then
    case_ burrow-exec "$BURROW_BIN exec $EXEC_NAME /bin/true"
  else
    echo "note: burrow-exec skipped: run -d failed: $(cat "$T/burrow-exec.err")"
  fi
fi
if want podman-exec; then
  if $AS_USER sh -c "$PODMAN_BASE run -d --name $EXEC_NAME --network none --rootfs $R /bin/sleep 3600" >/dev/null 2>"$T/podman-exec.err"; then
    case_ podman-exec "$PODMAN_BASE exec $EXEC_NAME /bin/true"
  else
    echo "note: podman-exec skipped: podman run -d failed: $(tail -n1 "$T/podman-exec.err")"
  fi
fi

echo "bench-startup: $(uname -r), $(nproc) CPUs, user $USER_NAME, rootfs $R, $RUNS interleaved runs per case"
echo "versions: $(bwrap --version 2>/dev/null | head -n1); $(crun --version 2>/dev/null | head -n1);" \
  "$(runc --version 2>/dev/null | head -n1); $(podman --version 2>/dev/null); ch-run $(env USER=root ch-run --version 2>&1 | head -n1)"
[ -z "$BURROW_NOTE" ] || echo "note: burrow rows skipped: $BURROW_NOTE"
if [ -z "$BURROW_NOTE" ]; then
  # issue 2's target counts only with the subid ranges mapped through newuidmap, not the single-ID fallback
  # (--userns=private: the map relative to the host; one from the keeper is relative to the keeper's namespace)
  map=$($AS_USER "$BURROW_BIN" run --network none --userns=private --rootfs "$R" -- /bin/cat /proc/self/uid_map 2>&1 || true)
  echo "burrow uid_map: $(echo "$map" | tr -s ' \n' ' ')"
  [ "$(echo "$map" | grep -c .)" -ge 2 ] ||
    echo "note: burrow did not map a subid range (single-ID fallback?): the burrow/bwrap target does not count"
fi
[ -s "$T/crun-bundle/config.json" ] || echo "note: crun spec --rootless failed: $(cat "$T/crun-spec.err")"

# join the delegated directory: the user's systemd manager can then move our children into its scopes
CGDIR=${BURROW_BENCH_CGROUP:-$CG2/burrow-ci/tests}
if [ -n "$CG2" ] && [ -w "$CGDIR/cgroup.procs" ]; then
  echo $$ > "$CGDIR/cgroup.procs"
else
  echo "note: no delegated cgroup $CGDIR (run scripts/ci-setup.sh): scope rows will likely be skipped"
fi

set -- python3 "$HERE/benchlib.py" -n "$RUNS" --timeout 20 --prefix "$AS_USER" --baseline burrow,bwrap --subtract host-true \
  --target "burrow / bwrap <= 1.0" --target "burrow-mem - burrow <= 10" \
  --target "burrow - burrow-unhardened <= 0.3" \
  --target "burrow / burrow-private <= 1.0" \
  --target "burrow-exec - host-true <= 5" --target "burrow-exec / podman-exec <= 0.1"
[ -z "$JSON" ] || set -- "$@" --json "$JSON"
[ -z "$SEED" ] || set -- "$@" --seed "$SEED"
while IFS="$(printf '\t')" read -r name cmd; do
  set -- "$@" --case "$name" "$cmd"
done < "$CASES"

if [ -n "$CG2" ] && [ "$CG2" != /sys/fs/cgroup ] && [ -e "$CG2/cgroup.controllers" ]; then
  # hybrid layout: mask cgroup2's controller list for crun inside a private mount namespace (host untouched)
  : > "$T/empty-controllers"
  # shellcheck disable=SC2016 # $1 $2 $@ belong to the inner sh
  unshare -m --propagation private sh -c \
    'mount --bind "$1" "$2/cgroup.controllers" && shift 2 && exec "$@"' sh "$T/empty-controllers" "$CG2" "$@"
else
  "$@"
fi
