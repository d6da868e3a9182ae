#!/bin/sh
# Run a test script inside a QEMU virtual machine with real systemd as PID 1 and a kernel whose cgroup v2 has
# the cpu, memory and pids controllers (this machine's own cgroup2 has none of them, and /dev/kvm cannot run
# guests, so the VM runs under TCG).
#
#   scripts/vm-test.sh [--keep-cache] SCRIPT [ARGS...]        (as root; idempotent)
#
# The VM boots Debian's linux-image-6.1.0-*-amd64 with a busybox initramfs that mounts the host's / read-only
# over virtio-9p under a tmpfs overlay and switch_roots into systemd. SCRIPT then runs AS the test user
# ($BURROW_TEST_USER, default burrow-t1) inside its user manager (user@UID.service with
# Delegate=cpu cpuset io memory pids), with XDG_RUNTIME_DIR and the session bus, in the caller's working
# directory. Its stdout and stderr come out on this script's stdout; its exit status is this script's.
#
# Environment passed into the VM: every variable whose name starts with BURROW or LIMITS, and the names
# listed in VM_TEST_ENV (space separated).
# Knobs: VM_TEST_TIMEOUT (seconds, default 600), VM_TEST_MEM (MiB, default 1536), VM_TEST_CPUS (default 2),
#        VM_TEST_CACHE (default /var/tmp/burrow-vm), VM_TEST_KEEP_RUN=1 keeps the run directory for debugging,
#        VM_TEST_APPEND: more kernel command line (e.g. systemd.log_level=debug systemd.log_target=kmsg).
# --keep-cache: use the newest cached kernel without asking apt for a newer one (offline; the initramfs is
#        still rebuilt when the files under scripts/vm/ change).
# Exit status: SCRIPT's; 124 when the VM times out; 125 when the harness itself fails.
set -eu

ME=vm-test.sh
HERE=$(cd "$(dirname "$0")" && pwd)
VMDIR=$HERE/vm
CACHE=${VM_TEST_CACHE:-/var/tmp/burrow-vm}
TIMEOUT=${VM_TEST_TIMEOUT:-600}
VM_USER=${BURROW_TEST_USER:-burrow-t1}
BUSYBOX=/bin/busybox
RUN="" QPID="" TPID=""

log() { echo "vm-test: $*" >&2; }
die() { echo "$ME: $*" >&2; exit 125; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
shq() { printf "'%s'" "$(printf %s "$1" | sed "s/'/'\\\\''/g")"; }

cleanup() {
  rc=$?
  if [ -n "$QPID" ] && kill -0 "$QPID" 2>/dev/null; then
    kill "$QPID" 2>/dev/null || true
    i=0; while kill -0 "$QPID" 2>/dev/null && [ $i -lt 20 ]; do sleep 0.1; i=$((i + 1)); done
    kill -9 "$QPID" 2>/dev/null || true
  fi
  [ -z "$TPID" ] || kill "$TPID" 2>/dev/null || true
  if [ -n "$RUN" ]; then
    if [ "${VM_TEST_KEEP_RUN:-0}" = 1 ]; then log "run directory kept: $RUN"; else rm -rf "$RUN"; fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

KEEP_CACHE=0
while [ $# -gt 0 ]; do
  case $1 in
    --keep-cache) KEEP_CACHE=1; shift ;;
    -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --) shift; break ;;
    -*) die "unknown option $1 (usage: $ME [--keep-cache] SCRIPT [ARGS...])" ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || die "usage: $ME [--keep-cache] SCRIPT [ARGS...]"
[ "$(id -u)" = 0 ] || die "must run as root (QEMU's 9p server must read the whole host root)"
SCRIPT=$(readlink -f "$1") || die "script $1 not found"
shift
[ -f "$SCRIPT" ] || die "script $SCRIPT not found"
for t in qemu-system-x86_64 apt-get dpkg-deb modinfo cpio gzip xz flock mkfs.ext4; do
  command -v $t >/dev/null ||
    die "$t not found (run scripts/ci-setup.sh; packages qemu-system-x86 cpio kmod xz-utils e2fsprogs)"
done
# the initramfs has no libc: busybox must be the static one (a dynamic one names its loader, ld-linux)
[ -x $BUSYBOX ] && $BUSYBOX --list | grep -qx switch_root && ! LC_ALL=C grep -q /ld-linux $BUSYBOX ||
  die "no static $BUSYBOX with switch_root (apt-get install busybox-static)"
id -u "$VM_USER" >/dev/null 2>&1 || die "test user $VM_USER does not exist (run scripts/ci-setup.sh)"

mkdir -p "$CACHE"
exec 9>"$CACHE/lock"
flock 9        # one cache builder at a time; VMs of concurrent runs then share the cache read-only

# ---- 1. the kernel: newest linux-image-6.1.0-N-amd64 known to apt, and its module closure ----------------
newest_apt_kernel() {
  apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' | awk '{print $1}' | sort -V | tail -n 1
}
pick_kernel() {
  if [ $KEEP_CACHE = 1 ]; then
    k=$(ls -d "$CACHE"/kernel-6.1.0-*/key 2>/dev/null | sed -n 's,.*/kernel-\(6\.1\.0-[0-9]*-amd64\)-.*,\1,p' |
      sort -V | tail -n 1)
    [ -n "$k" ] && { echo "$k"; return; }
  fi
  p=$(newest_apt_kernel)
  if [ -z "$p" ]; then apt-get update -q >/dev/null 2>&1 || true; p=$(newest_apt_kernel); fi
  [ -n "$p" ] || die "apt knows no linux-image-6.1.0-*-amd64 package (is Debian bookworm in the apt sources?)"
  echo "${p#linux-image-}"
}

# append module $1 and, first, its dependencies to $ORDER, copying the .ko files into $2
# shellcheck disable=SC3043   # dash (Debian's /bin/sh) and busybox ash have local
add_module() {
  local f d      # recursive: dash's local keeps each level's file
  case " $ORDER " in *" $1 "*) return 0 ;; esac
  f=$(grep -E "/($1|$(echo "$1" | tr _ -))\.ko\$" "$KO_INDEX" | head -n 1)
  if [ -z "$f" ]; then
    grep -qE "/($1|$(echo "$1" | tr _ -))\.ko\$" "$MODROOT/modules.builtin" && return 0
    die "kernel module $1 is neither in linux-image-$KVER nor built in"
  fi
  for d in $(modinfo -F depends "$f" | tr , ' '); do add_module "$d" "$2"; done
  case " $ORDER " in *" $1 "*) return 0 ;; esac
  cp "$f" "$2/$1.ko"
  ORDER="$ORDER $1"
}

# Debian's vmlinuz decompresses itself (xz) before the kernel starts: under TCG that costs seconds per boot.
# QEMU boots the uncompressed ELF directly through its PVH entry point, so unpack it once here; the
# compressed image stays the fallback when this fails.
extract_vmlinux() {
  off=$(LC_ALL=C grep -obUaP '\xFD\x37\x7A\x58\x5A\x00' "$1" | head -n 1 | cut -d: -f1)
  [ -n "$off" ] && tail -c +$((off + 1)) "$1" | xz -dcq --single-stream > "$2.tmp" 2>/dev/null &&
    [ "$(head -c 4 "$2.tmp" | od -An -c | tr -d ' ')" = 177ELF ] && mv "$2.tmp" "$2" && return 0
  rm -f "$2.tmp"
  log "cannot unpack the kernel's ELF image: booting the compressed one (slower)"
}

build_kernel_cache() {
  t0=$(now)
  tmp=$(mktemp -d "$CACHE/tmp.XXXXXX")
  # apt drops privileges to _apt for downloads: let it write there
  chown _apt "$tmp" 2>/dev/null || true
  (cd "$tmp" && apt-get download -q "linux-image-$KVER" >/dev/null 2>"$tmp/apt.err") ||
    { e=$(tail -n 1 "$tmp/apt.err"); rm -rf "$tmp"; die "apt-get download linux-image-$KVER failed: $e"; }
  dpkg-deb -x "$tmp"/linux-image-*.deb "$tmp/x" || { rm -rf "$tmp"; die "cannot unpack linux-image-$KVER"; }
  MODROOT=$tmp/x/lib/modules/$KVER
  KO_INDEX=$tmp/ko.list
  find "$MODROOT" -name '*.ko' > "$KO_INDEX"
  new=$KDIR.new
  rm -rf "$new" && mkdir -p "$new/mods"
  cp "$tmp/x/boot/vmlinuz-$KVER" "$new/vmlinuz"
  extract_vmlinux "$new/vmlinuz" "$new/vmlinux"
  ORDER=""
  for m in $(grep -v '^#' "$VMDIR/modules.list"); do add_module "$m" "$new/mods"; done
  echo "$ORDER" | tr ' ' '\n' > "$new/mods/order"
  echo "$KKEY" > "$new/key"
  rm -rf "$KDIR" "$tmp"
  mv "$new" "$KDIR"
  log "kernel $KVER cached with modules:$ORDER in $(elapsed "$t0") s"
}

KVER=$(pick_kernel)
MODS=$(grep -v '^#' "$VMDIR/modules.list" | tr '\n' ' ')
# one directory per kernel and module list, so that worktrees with different lists do not evict each other
KDIR=$CACHE/kernel-$KVER-$(echo "$MODS" | sha256sum | cut -c1-8)
# the key: package version and module list; --keep-cache trusts the cached version instead of asking apt
if [ $KEEP_CACHE = 1 ] && [ -f "$KDIR/key" ]; then
  KKEY=$(head -n 1 "$KDIR/key")
else
  KKEY="$KVER $(apt-cache show --no-all-versions "linux-image-$KVER" 2>/dev/null | sed -n 's/^Version: //p' | head -n 1)"
fi
KKEY="$KKEY
$MODS"
[ -f "$KDIR/key" ] && [ "$(cat "$KDIR/key")" = "$KKEY" ] || build_kernel_cache

# ---- 2. the initramfs: busybox, the modules, init and the unit files of scripts/vm/ ----------------------
IKEY=$(sha256sum $BUSYBOX "$VMDIR"/* "$KDIR"/mods/* | awk '{print $1}' | sha256sum | cut -c1-16)
INITRD=$CACHE/initrd-$IKEY.gz
if [ ! -f "$INITRD" ]; then
  t0=$(now)
  tmp=$(mktemp -d "$CACHE/tmp.XXXXXX")
  mkdir -p "$tmp/bin" "$tmp/dev" "$tmp/proc" "$tmp/sys" "$tmp/vm"
  cp $BUSYBOX "$tmp/bin/busybox"
  cp -a "$KDIR/mods" "$tmp/mods"
  cp "$VMDIR/init" "$tmp/init" && chmod 0755 "$tmp/init"
  cp "$VMDIR/ci-run.sh" "$VMDIR"/*.service "$VMDIR"/*.target "$VMDIR"/*.conf "$VMDIR/pam-systemd-user" "$tmp/vm/"
  mknod -m 0600 "$tmp/dev/console" c 5 1     # the kernel opens it for init's stdio before devtmpfs exists
  (cd "$tmp" && find . | cpio -o -H newc --quiet | gzip -1 > "$INITRD.new") ||
    { rm -rf "$tmp"; die "cannot build the initramfs"; }
  mv "$INITRD.new" "$INITRD"
  rm -rf "$tmp"
  log "initramfs built in $(elapsed "$t0") s"
fi
# Entries unused for two days go; a day's grace keeps those of concurrent runs from other worktrees.
touch "$INITRD" "$KDIR"
find "$CACHE" -maxdepth 1 \( -name 'initrd-*.gz' -o -name 'kernel-*' -o -name 'run.*' -o -name 'tmp.*' \) \
  -mtime +1 -exec rm -rf {} + 2>/dev/null || true
flock -u 9

# ---- 3. the run share: a writable host directory for the user's run.sh, its output and exit status --------
RUN=$(mktemp -d "$CACHE/run.XXXXXX")
SHARE=$RUN/share
mkdir -m 0755 "$SHARE"
echo "$VM_USER" > "$SHARE/user"
# the scratch disk (/scratch in the VM): sparse, so it costs only what the test writes
truncate -s "${VM_TEST_SCRATCH_GIB:-4}G" "$RUN/scratch.img"
mkfs.ext4 -q -F -O ^has_journal -E lazy_itable_init=1,lazy_journal_init=1 "$RUN/scratch.img" ||
  die "mkfs.ext4 of the scratch disk $RUN/scratch.img failed"
: > "$SHARE/output"
{
  echo "# generated by $ME: the environment, working directory and command of the test"
  echo "export TMPDIR=/scratch/tmp"
  env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' | sort -u | while read -r n; do
    case "$n" in BURROW*|LIMITS*) ;; *) case " ${VM_TEST_ENV:-} " in *" $n "*) ;; *) continue ;; esac ;; esac
    eval "v=\${$n}"   # n is a validated variable name
    # shellcheck disable=SC2154
    echo "export $n=$(shq "$v")"
  done
  echo "cd $(shq "$PWD") 2>/dev/null || cd \"\$HOME\" || cd /"
  # not exec: systemd-run reports a service killed by a signal as 255; the shell reports 128+signal
  if [ -x "$SCRIPT" ]; then shq "$SCRIPT"; else printf '/bin/sh %s' "$(shq "$SCRIPT")"; fi
  for a in "$@"; do printf ' %s' "$(shq "$a")"; done
  printf '\nexit $?\n'
} > "$SHARE/run.sh"

# ---- 4. boot ---------------------------------------------------------------------------------------------
KERNEL=$KDIR/vmlinux
[ -f "$KERNEL" ] || KERNEL=$KDIR/vmlinuz
T0=$(now)
nice -n 10 qemu-system-x86_64 -accel tcg -m "${VM_TEST_MEM:-1536}" -smp "${VM_TEST_CPUS:-2}" \
  -nodefaults -no-user-config -display none -no-reboot -nic none \
  -serial "file:$RUN/console.log" \
  -kernel "$KERNEL" -initrd "$INITRD" \
  -append "console=ttyS0 quiet loglevel=4 panic=-1 cimode=systemd systemd.show_status=0 ${VM_TEST_APPEND:-}" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap \
  -virtfs "local,path=$SHARE,mount_tag=vmshare,security_model=passthrough" \
  -drive "file=$RUN/scratch.img,if=virtio,format=raw,cache=unsafe" \
  </dev/null >"$RUN/qemu.log" 2>&1 9>&- &
QPID=$!
tail -n +1 -f -s 0.3 --pid="$QPID" "$SHARE/output" &
TPID=$!

console_tail() { tail -n "${1:-15}" "$RUN/console.log" 2>/dev/null | sed 's/^/vm-console: /' >&2 || true; }
rc_seen=""
while kill -0 "$QPID" 2>/dev/null; do
  t=$(elapsed "$T0")
  if [ -z "$rc_seen" ] && [ -f "$SHARE/rc" ]; then rc_seen=${t%.*}; fi
  if [ -n "$rc_seen" ] && [ $((${t%.*} - rc_seen)) -gt 30 ]; then
    log "the VM did not power off 30 s after the script ended: stopping QEMU"
    kill "$QPID" 2>/dev/null || true
  fi
  if [ "${t%.*}" -ge "$TIMEOUT" ]; then
    console_tail
    echo "$ME: timed out after $TIMEOUT s (VM_TEST_TIMEOUT), script $SCRIPT did not finish" >&2
    exit 124
  fi
  sleep 0.5
done
qrc=0; wait "$QPID" || qrc=$?
QPID=""
wait "$TPID" 2>/dev/null || true
TPID=""
TOTAL=$(elapsed "$T0")

if [ ! -f "$SHARE/rc" ]; then
  cat "$RUN/qemu.log" >&2
  console_tail 25
  die "the VM stopped (qemu status $qrc) before the script finished (see the console lines above)"
fi
rc=$(cat "$SHARE/rc")
v() { cat "$SHARE/$1" 2>/dev/null || echo ?; }
log "script exit status $rc; VM uptime: switch_root $(v root-ready) s, script start $(v boot-to-script) s," \
  "user manager ready $(v user-manager-ready) s, script end $(v script-end) s; QEMU ran $TOTAL s"
exit "$rc"
