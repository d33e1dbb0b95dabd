#!/bin/bash
# A fresh work folder per session on every slave.
set -e
source "$XRDTEST_FUNCTIONS"
rm -rf @workdir@/@slavename@
mkdir -p @workdir@/@slavename@
log "session $XRDTEST_SESSION on @slavename@: files=@files@"
