#!/bin/bash
# Mount the data disks, write an xrootd configuration and start the daemons.
set -e
source "$XRDTEST_FUNCTIONS"
@diskmounts@
mkdir -p /var/log/xrootd/@slavename@ @datadir@
chown -R xrootd:xrootd @datadir@ /var/log/xrootd/@slavename@ 2>/dev/null || true
cat > /etc/xrootd/xrootd-test.cfg <<CFG
all.manager @redirector@:3121
all.export @datadir@
if @redirector@
  all.role manager
else if named client1.xrd.test
  all.role client
else
  all.role server
fi
CFG
case "@slavename@" in
  client1.*) log "client: nothing to start" ;;
  *)
    xrootd -b -l /var/log/xrootd/@slavename@/xrootd.log -c /etc/xrootd/xrootd-test.cfg
    cmsd -b -l /var/log/xrootd/@slavename@/cmsd.log -c /etc/xrootd/xrootd-test.cfg
    log "xrootd and cmsd started on @slavename@"
    ;;
esac
