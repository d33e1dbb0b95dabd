#!/bin/bash
set -e
source "$XRDTEST_FUNCTIONS"
# Every slave of the session sees the same list; this one must be in it.
log "peers: $XRDTEST_SLAVES"
case " $XRDTEST_SLAVES " in
  *" $XRDTEST_SLAVE "*) log "found myself ($XRDTEST_SLAVE) among the peers" ;;
  *) echo "$XRDTEST_SLAVE missing from XRDTEST_SLAVES"; exit 1 ;;
esac
