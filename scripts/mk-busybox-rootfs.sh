#!/bin/sh
# Build a minimal root filesystem from the static busybox of Debian's busybox-static package.
#
#   scripts/mk-busybox-rootfs.sh [--busybox PATH] DIR
#
# DIR gets /bin/busybox, one relative symlink per applet at the path busybox itself lists
# (`busybox --list-full`: bin/sh, usr/bin/awk, sbin/ip...), /etc/passwd and /etc/group with root and
# nobody, empty /etc/hosts /etc/hostname /etc/resolv.conf (so runtimes can bind over them even when the
# rootfs is mounted read-only), /etc/mtab -> /proc/mounts, and empty mount points /proc /dev /sys /tmp /run.
# Idempotent: running it again on the same DIR refreshes busybox and the links and keeps other files.
# Run it as the user who should own the tree (tests: the unprivileged test user). Prints DIR on success.
set -eu

BB=/bin/busybox
while [ $# -gt 0 ]; do
  case $1 in
    --busybox) [ $# -ge 2 ] || { echo "mk-busybox-rootfs: --busybox needs a path" >&2; exit 2; }
               BB=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; break ;;
    -*) echo "mk-busybox-rootfs: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -eq 1 ] || { echo "usage: mk-busybox-rootfs.sh [--busybox PATH] DIR" >&2; exit 2; }
DIR=$1

[ -x "$BB" ] || { echo "mk-busybox-rootfs: $BB not found or not executable: install busybox-static" >&2; exit 1; }
# a dynamically linked busybox would need the host's libc inside the rootfs
if command -v file >/dev/null 2>&1 && ! file -L "$BB" | grep -q 'statically linked'; then
  echo "mk-busybox-rootfs: $BB is not statically linked: install busybox-static" >&2; exit 1
fi

mkdir -p "$DIR"
cd "$DIR"
mkdir -p bin sbin usr/bin usr/sbin etc proc dev sys run root home var
mkdir -p tmp var/tmp
chmod 1777 tmp var/tmp
chmod 0700 root

# copy through a temporary name, then rename: an existing /bin/busybox may be in use by a container
cp "$BB" bin/.busybox.new
chmod 0755 bin/.busybox.new
mv -f bin/.busybox.new bin/busybox

# relative links, so they resolve both inside the container and when inspected from the host
"$BB" --list-full | while IFS= read -r applet; do
  case $applet in ''|bin/busybox|*/../*|/*) continue ;; esac
  case $applet in
    */*) d=${applet%/*}; mkdir -p "$d"
         up=../; rest=$d   # one ../ per directory level of the link, without forking sed 270 times
         while [ "${rest#*/}" != "$rest" ]; do rest=${rest#*/}; up=../$up; done ;;
    *) up= ;;   # a top-level applet such as linuxrc
  esac
  ln -sfn "${up}bin/busybox" "$applet"
done

if [ ! -s etc/passwd ]; then
  printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' > etc/passwd
fi
if [ ! -s etc/group ]; then
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' > etc/group
fi
for f in etc/hosts etc/hostname etc/resolv.conf; do [ -e "$f" ] || : > "$f"; done
chmod 0644 etc/passwd etc/group etc/hosts etc/hostname etc/resolv.conf
# the usual link; without it some runtimes (runc, crun) create it in the rootfs on their first run
[ -e etc/mtab ] || [ -L etc/mtab ] || ln -s /proc/mounts etc/mtab

pwd
