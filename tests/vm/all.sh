#!/bin/sh
# Everything that needs enforced cgroup v2 limits, in one VM boot (scripts/vm-test.sh runs it as the test user
# inside its systemd user manager): the binary's limits (limits.sh), then the cgroup library's tests that are
# ignored on hosts without delegated controllers.
#   BURROW=path/to/burrow BURROW_CGROUP_LIB=path/to/cgroup_lib-test-binary scripts/vm-test.sh tests/vm/all.sh
set -u
rc=0
sh "$(dirname "$0")/limits.sh" || rc=1
if [ -n "${BURROW_CGROUP_LIB:-}" ]; then
  "$BURROW_CGROUP_LIB" --include-ignored --test-threads=1 || rc=1
else
  echo "FAIL: BURROW_CGROUP_LIB is not set"; rc=1
fi
exit $rc
