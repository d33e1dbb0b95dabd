#!/bin/bash
set -e
source "$XRDTEST_FUNCTIONS"
# Every slave of the session sees the same list; this one must be in it.
log "peers: $XRDTEST_SLAVES"
case " $XRDTEST_SLAVES " in
  *" $XRDTEST_SLAVE "*) log "found myself ($XRDTEST_SLAVE) among the peers" ;;
  *) echo "$XRDTEST_SLAVE missing from XRDTEST_SLAVES"; exit 1 ;;
esac
# Inside the stage, the slaves coordinate through the session's sync state: each publishes
# where its data is, all read every value, and they leave together (see docs/sync.md).
sync_publish data_dirs "$XRDTEST_SLAVE:@datadir@/@slavename@"
log "data folders of the session: $(sync_subscribe data_dirs all --timeout 30s | sort | tr '\n' ' ')"
sync_barrier peers_listed --timeout 30s
