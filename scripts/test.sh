#!/bin/sh
# burrow's whole test suite: the README's test command, and what .ci/run calls.
#   scripts/test.sh            as root: set the machine up (scripts/ci-setup.sh), build, then run every test
#                              binary as the unprivileged test users, strict (any skip fails)
#   scripts/test.sh NAME...    as root: only these test binaries (e.g. network launcher; `vm` for the VM run)
#   scripts/test.sh            as a normal user: cargo test as yourself (skips print their reason)
# Environment: BURROW_TEST_STRICT=1 (default as root) turns every skip into a failure.
#   BURROW_TEST_QUICK=1 skips setup, format and lints (a developer's inner loop; CI never sets it).
#   BURROW_TEST_FILTER=TEXT passes TEXT to each test binary (runs only the tests whose names contain it).
set -eu
cd "$(dirname "$0")/.."
repo=$(pwd)
export PATH="$HOME/.cargo/bin:$PATH"

if [ "$(id -u)" != 0 ]; then
  exec cargo test "$@"
fi

U1=${BURROW_TEST_USER:-burrow-t1}           # has subordinate ids
U2=${BURROW_TEST_USER_NOSUB:-burrow-t2}     # has none
export BURROW_TEST_STRICT=${BURROW_TEST_STRICT:-1}
[ -n "${BURROW_TEST_QUICK:-}" ] || sh scripts/ci-setup.sh

# Build as root into a target directory the test users can read (the checkout itself may be private).
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/burrow-target}
if [ -z "${BURROW_TEST_QUICK:-}" ]; then
  echo "== format and lints"
  cargo fmt --check
  cargo clippy --all-targets --quiet -- -D warnings
fi
echo "== build"
cargo build --quiet --all-targets
bins=$(cargo test --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        print(m["target"]["name"] + " " + m["executable"])')
chmod -R a+rX "$CARGO_TARGET_DIR"

# Each test binary starts with the dispositions of an interactive shell's command (HUP, INT, QUIT not ignored,
# whatever ran this script: a CI runner that starts it in the background ignores SIGINT, and the terminal tests'
# ^C would then be ignored inside the containers too, as burrow keeps the dispositions its caller chose).
# Each test binary starts in the cgroup2 directory that ci-setup.sh delegated to the test user: only root may
# move a process out of the root cgroup, and the tests create systemd scopes and cgroups below it.
CG2=$(awk '$3=="cgroup2"{print $2; exit}' /proc/self/mounts)
as_user() {
  u=$1; shift
  procs=/dev/null
  [ -n "$CG2" ] && [ -w "$CG2/burrow-ci/tests/cgroup.procs" ] && procs=$CG2/burrow-ci/tests/cgroup.procs
  sh -c 'echo $$ > "$0" && exec "$@"' "$procs" \
    setpriv --reuid="$u" --regid="$(id -g "$u")" --init-groups --reset-env env --default-signal=HUP,INT,QUIT \
    HOME="$(getent passwd "$u" | cut -d: -f6)" USER="$u" LOGNAME="$u" \
    PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin BURROW_TEST_STRICT="$BURROW_TEST_STRICT" \
    ${RUST_BACKTRACE:+RUST_BACKTRACE=$RUST_BACKTRACE} "$@"
}

log=$(mktemp /tmp/burrow-test-log.XXXXXX)
trap 'rm -f "$log" "$log.one"' EXIT
failed_bins=""
only=" $* "
wanted() { [ "$only" = "  " ] || case "$only" in *" $1 "*) true ;; *) false ;; esac; }
for entry in $(echo "$bins" | tr ' ' '='); do
  name=${entry%%=*}; exe=${entry#*=}
  wanted "$name" || continue
  case "$name" in
    nosubids) user=$U2 ;;
    *) user=$U1 ;;
  esac
  echo "== $name (as $user)"
  rc=0
  (cd /tmp && as_user "$user" "$exe" ${BURROW_TEST_FILTER:+"$BURROW_TEST_FILTER"}) > "$log.one" 2>&1 || rc=$?
  cat "$log.one"; cat "$log.one" >> "$log"
  [ "$rc" = 0 ] || failed_bins="$failed_bins $name"
done
# Cgroup limits are enforced only where cgroup v2 has the controllers: a QEMU VM with systemd as PID 1.
if wanted vm; then
echo "== vm: cgroup enforcement (QEMU/TCG, systemd as PID 1, about a minute and a half)"
vmdir=$CARGO_TARGET_DIR/vm-tests
rm -rf "$vmdir" && mkdir -p "$vmdir" && cp tests/vm/limits.sh tests/vm/all.sh "$vmdir/" && chmod -R a+rX "$vmdir"
cg_lib=$(echo "$bins" | awk '$1 == "cgroup_lib" { print $2 }')
rc=0
(cd /tmp && BURROW="$CARGO_TARGET_DIR/debug/burrow" BURROW_CGROUP_LIB="$cg_lib" \
  sh "$repo/scripts/vm-test.sh" "$vmdir/all.sh") > "$log.one" 2>&1 || rc=$?
cat "$log.one"; cat "$log.one" >> "$log"
[ "$rc" = 0 ] || failed_bins="$failed_bins vm"
fi

# One closing line over all test binaries (and the VM scripts' PASS/FAIL lines).
awk '/^PASS:/ { p++ } /^FAIL:/ { f++ }
     /^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "burrow tests: %d passed, %d failed\n", p, f; exit (f > 0) }' "$log" || failed_bins="$failed_bins (counts)"
if [ -n "$failed_bins" ]; then
  echo "FAILED:$failed_bins" >&2
  exit 1
fi
