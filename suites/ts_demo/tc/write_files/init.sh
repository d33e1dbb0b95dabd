#!/bin/bash
set -e
source "$XRDTEST_FUNCTIONS"
rm -f @datadir@/@slavename@/payload.bin @datadir@/@slavename@/payload.sha256
log "ready to write @payload_kib@ KiB on @slavename@"
