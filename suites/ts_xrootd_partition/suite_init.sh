#!/bin/bash
# Start an xrootd cluster (redirector + data servers) and wait until it really works: the
# client's probe write through the redirector is the proof that the data servers have
# logged in to the manager, which a sleep could only hope for.
set -euo pipefail
source "$XRDTEST_FUNCTIONS"
@diskmounts@

# Per-host names and folders, so that several hosts sharing one file system (test
# machines made of network namespaces) do not collide; on separate machines they cost
# nothing. -n makes xrootd and cmsd keep logs, admin and pid files under a NAME/ folder.
name=@slavename@
cfg=/etc/xrootd/ts_xrootd_partition-$name.cfg
localroot=@datadir@/$name

start_daemons() {
    mkdir -p "$localroot@datadir@" /var/log/xrootd/$name /var/spool/xrootd /var/run/xrootd
    # xrootd refuses to run as root: it runs as the xrootd user, which must own its folders.
    chown -R xrootd:xrootd "$localroot" /var/log/xrootd/$name /var/spool/xrootd /var/run/xrootd
    chmod 755 @datadir@
    cat > "$cfg" <<CFG
all.manager @redirector@:3121
all.export @datadir@
# The logical path @datadir@/f is the file $localroot@datadir@/f on this host.
oss.localroot $localroot
all.adminpath /var/spool/xrootd
all.pidpath /var/run/xrootd
if @redirector@
  all.role manager
  # A manager waits 90 s for its servers before it serves; they log in within seconds.
  cms.delay startup 10
else
  all.role server
fi
CFG
    xrootd -b -R xrootd -n "$name" -l /var/log/xrootd/xrootd.log -c "$cfg"
    cmsd -b -R xrootd -n "$name" -l /var/log/xrootd/cmsd.log -c "$cfg"
    wait_for_port "$name" 1094 --timeout 60s
    log "xrootd and cmsd started on $name"
}

case " @roles@ " in
  *" redirector "*)
    start_daemons
    wait_for_port "$name" 3121 --timeout 60s
    sync_signal redirector_up "$name"
    # Stay in the stage until the client has proved the cluster works, so that a
    # failure shows up on every host's stage rather than only on the client's.
    sync_wait cluster_ready --timeout 5m >/dev/null
    ;;
  *" data "*)
    start_daemons
    sync_signal data_up "$name"
    sync_wait cluster_ready --timeout 5m >/dev/null
    ;;
  *" client "*)
    sync_wait redirector_up --timeout 2m >/dev/null
    sync_wait data_up role:data --timeout 2m >/dev/null
    # The data servers' cmsd needs a few seconds to log in to the manager; until then
    # the redirector has nowhere to send a write.
    probe=@datadir@/probe-$XRDTEST_SESSION
    wait_until --timeout 2m --every 2s -- \
        timeout 30 xrdcp -f -s /etc/hosts "root://@redirector@/$probe"
    log "probe write through @redirector@ works"
    sync_signal cluster_ready
    ;;
esac
