#!/bin/bash
# Suite finalization: cleans up, and runs even when initialization or a case failed.
source "$XRDTEST_FUNCTIONS"
log "removing @datadir@/@slavename@"
rm -rf @datadir@/@slavename@
