#!/bin/bash
set -e
source "$XRDTEST_FUNCTIONS"
case "@slavename@" in
  client1.*)
    stamp xrdcp -f root://@redirector@/@datadir@/copy_to.dat /tmp/copy_from.dst
    cmp /tmp/copy_to.src /tmp/copy_from.dst
    log "round trip through xrootd verified"
    ;;
esac
