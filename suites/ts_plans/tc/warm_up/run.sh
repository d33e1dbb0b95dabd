#!/bin/bash
# Fails the first time it runs in a session (the "cache" is cold), passes after.
set -e
source "$XRDTEST_FUNCTIONS"
marker=@workdir@/@slavename@/warm
if [ ! -e "$marker" ]; then
    touch "$marker"
    log "cache cold on @slavename@: failing this attempt"
    exit 1
fi
log "cache warm on @slavename@"
