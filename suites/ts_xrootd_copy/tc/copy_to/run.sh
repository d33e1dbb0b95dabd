#!/bin/bash
set -e
source "$XRDTEST_FUNCTIONS"
case "@slavename@" in
  client1.*) stamp xrdcp -f /tmp/copy_to.src root://@redirector@/@datadir@/copy_to.dat ;;
  *) log "server side: nothing to do" ;;
esac
