#!/bin/bash
# The client makes the file to replicate: random, so that a wrong or stale copy cannot
# compare equal by chance.
set -euo pipefail
source "$XRDTEST_FUNCTIONS"
case " @roles@ " in
  *" client "*)
    head -c 8388608 /dev/urandom > "$XRDTEST_WORKDIR/replica.src"
    log "replica.src: $(sha256sum < "$XRDTEST_WORKDIR/replica.src")"
    ;;
esac
