#!/bin/bash
# Stop this host's daemons only, by their pid files: other xrootd instances may run on the
# same machine (and, on namespace hosts, in the same process table).
source "$XRDTEST_FUNCTIONS"
name=@slavename@
# Gone, or a zombie its parent has not reaped yet.
gone() { local state; state=$(ps -o stat= -p "$1") || return 0; [[ $state == Z* ]]; }
for daemon in xrootd cmsd; do
    pidfile=/var/run/xrootd/$name/$daemon.pid
    if [[ -s $pidfile ]]; then
        pid=$(<"$pidfile")
        kill "$pid" 2>/dev/null || true
        wait_until --timeout 20s --every 500ms -- gone "$pid" \
            || kill -KILL "$pid" 2>/dev/null || true
        rm -f "$pidfile"
        log "$daemon stopped on $name"
    fi
done
rm -f /etc/xrootd/ts_xrootd_partition-$name.cfg
rm -rf "@datadir@/$name"
true
