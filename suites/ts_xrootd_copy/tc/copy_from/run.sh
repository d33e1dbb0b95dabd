#!/bin/bash
# The client reads the file back through the redirector and compares checksums; without the
# session's key the cluster must refuse it.
set -e
source "$XRDTEST_FUNCTIONS"
case "@slavename@" in
  client1.*)
    export XrdSecPROTOCOL=sss XrdSecSSSKT=/etc/xrootd/test/sss.keytab
    stamp xrdcp -f root://@redirector@/@datadir@/copy_to.dat /tmp/copy_from.dst
    sent=$(sha256sum < /tmp/copy_to.src | cut -d' ' -f1)
    back=$(sha256sum < /tmp/copy_from.dst | cut -d' ' -f1)
    log "sha256 sent $sent, read back $back"
    if [ "$sent" = "$back" ]; then check checksums_equal pass; else check checksums_equal fail "$sent != $back"; fi
    # Another key (same key number, other secret) is refused.
    ( umask 077; sed 's/k:[0-9a-f]*/k:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff/' \
        /etc/xrootd/test/sss.keytab > /tmp/wrong.keytab )
    if XrdSecSSSKT=/tmp/wrong.keytab xrdcp -f root://@redirector@/@datadir@/copy_to.dat /tmp/wrong.dst 2>/tmp/wrong.err; then
      check wrong_key_refused fail "a client with another key read the file"
    else
      check wrong_key_refused pass "$(tail -1 /tmp/wrong.err)"
    fi
    ;;
esac
