#!/bin/bash
# Suite initialization: runs on every slave before any test case.
set -e
source "$XRDTEST_FUNCTIONS"
mkdir -p @datadir@/@slavename@
: > @datadir@/@slavename@/demo.log
log "suite $XRDTEST_SUITE starting on @slavename@ (session $XRDTEST_SESSION)" | tee -a @datadir@/@slavename@/demo.log
log "slaves in this session: $XRDTEST_SLAVES"
