#!/bin/bash
source "$XRDTEST_FUNCTIONS"
log "looking for a file that was never written"
if ! test -f @datadir@/@slavename@/never-written.txt; then
  echo "expected @datadir@/@slavename@/never-written.txt: it is not there (this case fails on purpose)"
  exit 3
fi
