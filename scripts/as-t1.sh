#!/bin/sh
# Runs a command as the unprivileged test user burrow-t1 (created by scripts/ci-setup.sh).
U=${BURROW_TEST_USER:-burrow-t1}
exec setpriv --reuid="$U" --regid="$U" --init-groups --reset-env env HOME="/home/$U" \
  PATH=/usr/sbin:/usr/bin:/sbin:/bin ${BURROW_TEST_STRICT:+BURROW_TEST_STRICT=$BURROW_TEST_STRICT} "$@"
