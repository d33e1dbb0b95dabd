#!/bin/bash
# The client drives the case; the other hosts follow its steps through sync signals so that
# their stage output shows each host's view, and so that they stay in the stage while the
# fault holds.
set -euo pipefail
source "$XRDTEST_FUNCTIONS"

lfn=@datadir@/replica-$XRDTEST_SESSION.dat
# Milliseconds since the epoch (EPOCHREALTIME needs bash 5; older images have date %N).
now_ms() {
    local t=${EPOCHREALTIME:-}
    if [[ -n $t ]]; then t=${t//[!0-9]/}; echo $(( 10#$t / 1000 )); else echo $(( $(date +%s%N) / 1000000 )); fi
}
secs() { printf '%d.%03d' $(( $1 / 1000 )) $(( $1 % 1000 )); }

client() {
    local src=$XRDTEST_WORKDIR/replica.src dst=$XRDTEST_WORKDIR/replica.dst
    # XrdCl's defaults give a host that drops packets minutes (120 s connection window,
    # several retries, 15 s timeout resolution); with these a dead data server costs a few
    # seconds before the client goes back to the redirector for another one.
    export XRD_CONNECTIONWINDOW=3 XRD_CONNECTIONRETRY=1 XRD_REQUESTTIMEOUT=20
    export XRD_STREAMTIMEOUT=10 XRD_TIMEOUTRESOLUTION=1

    # Two replicas, written to each data server directly (the redirector would place one).
    stamp xrdcp -f -s "$src" "root://@cut@/$lfn"
    stamp xrdcp -f -s "$src" "root://@other@/$lfn"
    log "replicas written to @cut@ and @other@"
    sync_signal replicas_written

    # Read once through the redirector while all is well: the manager then knows both
    # locations, so during the partition it may well send the client to the dead one.
    local t0 ok
    t0=$(now_ms)
    stamp xrdcp -f -s "root://@redirector@/$lfn" "$dst"
    cmp "$src" "$dst"
    result healthy_read_s "$(secs $(( $(now_ms) - t0 )))" s
    log "healthy read through @redirector@ in $(secs $(( $(now_ms) - t0 ))) s"

    fault_partition @cut@
    sync_signal partitioned
    # Several reads: the manager hands out its servers in turn and has not noticed the cut
    # yet, so some reads are sent to @cut@ first and must find their way to @other@.
    local i worst=0 failed=0 took via_cut=0 cut_ip
    cut_ip=$(getent hosts @cut@ | awk '{print $1; exit}')
    for i in 1 2 3 4; do
        rm -f "$dst"
        t0=$(now_ms)
        # Bounded by timeout, so that a hang fails the check instead of using up the stage.
        if XRD_LOGLEVEL=Debug XRD_LOGFILE="$XRDTEST_WORKDIR/read$i.log" \
            timeout 120 xrdcp -f -s "root://@redirector@/$lfn" "$dst" && cmp -s "$src" "$dst"; then
            ok=good
        else
            ok=FAILED
            failed=$(( failed + 1 ))
        fi
        took=$(( $(now_ms) - t0 ))
        (( took > worst )) && worst=$took
        log "read $i through @redirector@: $ok in $(secs $took) s"
        # XrdCl's own account: where the redirector sent it and what failed on the way.
        grep -E 'Redirected from|\[Error' "$XRDTEST_WORKDIR/read$i.log" | head -n 8 || true
        if grep -q -E "Redirected from: .* to: root://(@cut@|$cut_ip):" "$XRDTEST_WORKDIR/read$i.log"; then
            via_cut=$(( via_cut + 1 ))
        fi
    done
    result partition_read_s "$(secs $worst)" s
    # How many reads the redirector sent to the cut server first (0: the failover path
    # was not exercised this time).
    result reads_sent_to_cut "$via_cut"
    log "$via_cut of 4 reads were sent to @cut@ first"
    if (( failed == 0 )); then
        check replica_read_during_partition pass "4 of 4 reads served without @cut@, the slowest in $(secs $worst) s"
    else
        check replica_read_during_partition fail "$failed of 4 reads through @redirector@ gave no good copy with @cut@ partitioned"
    fi
    # Let @cut@ see the cut from its side before it ends.
    sync_wait cut_seen --timeout 30s >/dev/null || true

    fault_heal
    sync_signal healed
    # Time until the healed server serves the file directly again (connections the
    # partition left dead must time out or be replaced first).
    t0=$(now_ms)
    if wait_until --timeout 2m --every 1s -- \
        bash -c "timeout 30 xrdcp -f -s 'root://@cut@/$lfn' '$dst.back' && cmp '$src' '$dst.back'"; then
        result cut_server_back_s "$(secs $(( $(now_ms) - t0 )))" s
        log "@cut@ serves $lfn again, $(secs $(( $(now_ms) - t0 ))) s after the heal"
        check cut_server_serves_again pass
    else
        check cut_server_serves_again fail "@cut@ did not serve $lfn within 2 min of the heal"
    fi
    sync_signal client_done
}

case " @roles@ " in
  *" client "*)
    client
    ;;
  *" data "*)
    sync_wait replicas_written --timeout 5m >/dev/null
    # Each server's own view of its replica (missing is reported by the client's check).
    log "local replica: $(ls -l "@datadir@/@slavename@$lfn" 2>&1)"
    sync_wait partitioned --timeout 5m >/dev/null
    if [[ @slavename@ == @cut@ ]]; then
        # One connect to the manager's cmsd port, as a log line of this side's view.
        if timeout 2 bash -c 'exec 3<>/dev/tcp/@redirector@/3121' 2>/dev/null; then
            log "@redirector@:3121 reachable from here: the partition does not hold"
        else
            log "@redirector@:3121 unreachable from here: partitioned"
        fi
        sync_signal cut_seen
    fi
    sync_wait client_done --timeout 7m >/dev/null
    ;;
  *)
    sync_wait client_done --timeout 7m >/dev/null
    ;;
esac
