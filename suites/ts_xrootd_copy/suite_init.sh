#!/bin/bash
# Mount the data disks, make the session's sss keytable, write an xrootd configuration and
# start the daemons. Every host reads the same configuration; `if` picks each one's role.
set -e
source "$XRDTEST_FUNCTIONS"
trap 'log "suite init failed at line $LINENO: $BASH_COMMAND"' ERR
@diskmounts@

# Shared-key (sss) authentication between the client and every server, with a key new in
# each session: the keytable is made from the session's shared secret, which the master
# gives every slave of the session (the same file on all of them). Keytable line format:
# version, user, group, key name, key number, created, expires, flags, key (hex).
hex=$(tr -d ' \n' < @session_secret_file@ | cut -c1-64)
number=$(( 0x${hex:0:15} ))
mkdir -p /etc/xrootd/test
keytab=/etc/xrootd/test/sss.keytab
( umask 077; printf '0 u:anybody g:usrgroup n:ts_xrootd_copy N:%s c:1700000000 e:0 f:0 k:%s\n' \
    "$number" "$hex" > "$keytab" )
log "sss keytable made from the session secret (key number $number)"

case "@slavename@" in
  client1.*) log "client: nothing to start"; exit 0 ;;
esac

mountpoint -q @datadir@ || log "warning: @datadir@ is not a mounted disk; the data stays in RAM"
# xrootd refuses to run as root: it runs as the package's user, which owns what it writes.
mkdir -p /var/log/xrootd/@slavename@ @datadir@
chown xrootd:xrootd "$keytab" /var/log/xrootd/@slavename@ @datadir@
cat > /etc/xrootd/xrootd-test.cfg <<CFG
all.manager @redirector@:3121
all.export @datadir@
all.adminpath /var/spool/xrootd
all.pidpath /run/xrootd
xrd.port 3121 if exec cmsd
cms.delay startup 1 servers 1 service 1 lookup 1
xrootd.seclib libXrdSec.so
sec.protocol sss -s $keytab
sec.protbind * only sss
if @redirector@
  all.role manager
else
  all.role server
fi
CFG
# Each daemon goes to the background once it has read its configuration (-b); its status
# says whether that worked. A failed start is tried again, with the daemon's words shown.
start_daemon() {
    local daemon=$1 logfile=/var/log/xrootd/@slavename@/$1.log try
    for try in 1 2 3; do
        if "$daemon" -b -R xrootd -l "$logfile" -c /etc/xrootd/xrootd-test.cfg; then
            return 0
        fi
        log "$daemon did not start (try $try of 3); the end of its log:"
        tail -n 15 "$logfile" 2>/dev/null || true
        sleep 2
    done
    return 1
}
start_daemon xrootd
start_daemon cmsd
log "xrootd and cmsd started on @slavename@ as user xrootd"
