#!/bin/bash
# The client copies the file into the cluster through the redirector, authenticated by sss;
# the redirector sends it on to a data server.
set -e
source "$XRDTEST_FUNCTIONS"
case "@slavename@" in
  client1.*)
    export XrdSecPROTOCOL=sss XrdSecSSSKT=/etc/xrootd/test/sss.keytab
    # The data servers log in to the redirector's cmsd a moment after it starts.
    for try in 1 2 3 4 5 6 7 8 9 10; do
      if stamp xrdcp -f /tmp/copy_to.src root://@redirector@/@datadir@/copy_to.dat; then break; fi
      [ $try -lt 10 ] || { check copy_to fail "xrdcp to the cluster failed 10 times"; exit 1; }
      sleep 3
    done
    xrdfs @redirector@ locate @datadir@/copy_to.dat
    check copy_to pass
    ;;
  *) log "server side: nothing to do" ;;
esac
