# xrdtest shell library for stage scripts.
#
# Use it with:   source "$XRDTEST_FUNCTIONS"
#
# log MSG...          print "[HH:MM:SS] MSG"
# stamp CMD [ARG...]  run CMD, print each line of its output (stdout and stderr) prefixed
#                     with "[HH:MM:SS] ", and return CMD's exit status. CMD runs in a
#                     subshell (it is part of a pipeline), so it cannot change the caller's
#                     variables or directory.
# assert_fail CMD [ARG...]
#                     run CMD and return 0 if it fails; if it succeeds, print a message and
#                     return 1. Safe under `set -e`: an expected failure does not end the
#                     script, an unexpected success does.
# result NAME VALUE [UNIT]
#                     report a measured number of this stage (latency, throughput...):
#                     NAME of letters, digits, `_ . - : /`; VALUE a finite number (12,
#                     -3.5, 1e6); UNIT optional, no spaces (ms, MB/s, %). The last value
#                     given for a NAME counts. Returns 2 on a usage error.
# check NAME pass|fail [MESSAGE...]
#                     report a named sub-result; a failed check fails the stage even when
#                     the script exits 0. Returns 0 once recorded, fail or pass, so
#                     that a script under `set -e` goes on to its next checks.
# wait_until [--timeout D] [--every D] [--] CMD [ARG...]
#                     run CMD every D (default 1s) until it exits 0, then return 0; CMD's
#                     output passes through. At the timeout (default 60s; CMD always runs at
#                     least once, the last try at the timeout) print a message naming CMD,
#                     the time waited, the number of tries and the last exit status, and
#                     return 1. Everything after the options (or after `--`) is the command.
#                     Safe under `set -e`: a failing try does not end the script, a timeout
#                     does.
# wait_for_port HOST PORT [--timeout D]
#                     wait until a TCP connect to HOST:PORT succeeds (bash's /dev/tcp, tried
#                     every 0.2s, each try bounded to 1s so that an address that drops
#                     packets cannot hang it); return 0 then, or at the timeout (default
#                     60s) print a message and return 1. PORT is 1..65535.
# monitor_log FILE PATTERN [--timeout D]
#                     wait until a line matching the extended regex PATTERN (grep -E) is
#                     written to FILE after the call, print it and return 0; at the timeout
#                     (default 60s) print a message and return 1. Lines already in FILE do
#                     not count; FILE may not exist yet; it is polled every 0.2s, and read
#                     again from its start when it is truncated or replaced (rotated). Only
#                     complete lines (ended by a newline) are matched. Starts no background
#                     process.
#
# sync_signal NAME [VALUE] / sync_wait NAME [COUNT] [--timeout D]
# sync_barrier NAME [--count N] [--timeout D]
# sync_publish TOPIC VALUE / sync_subscribe TOPIC [COUNT] [--timeout D]
#                     coordinate with the other slaves of the session inside a stage
#                     (docs/sync.md). Waits print the values they got, one per line; 0 met,
#                     1 failed (timed out, cannot be met, the stage ended), 2 usage.
# fault_partition A... [-- B...] [--until stage|case|session]
# fault_netem TARGET[,...] [delay D [JITTER]] [jitter D] [loss P%] [rate R] [--until ...]
# fault_pause [--on TARGET[,...]] PATTERN [--until ...] / fault_resume [PATTERN]
# fault_kill [--on TARGET[,...]] PATTERN [SIGNAL] / fault_heal
#                     inject faults on the session's slaves (docs/faults.md); they return
#                     once every target has applied the fault (0) or it failed (1, with
#                     the reason). Faults heal by themselves at the end of their stage, or
#                     of the case or session with --until.
#
# Durations D: 500ms, 10s, 2m, 1h, or a number of seconds (5, 0.5). Options may come before
# or after the other arguments of wait_for_port and monitor_log, and before the command of
# wait_until; `--timeout=D` works too. All three return 2 on a usage error (a bad duration,
# port or pattern, a missing argument) with a message.
#
# `result` and `check` append lines to the file named by $XRDTEST_RESULTS; any program may
# write the same lines there itself (`result NAME VALUE [UNIT]`, `check NAME pass|fail
# [MESSAGE]`, one per line). The slave checks them when the stage ends: bad lines are
# reported in the stage output and left out.
#
# Needs bash 4.2 or later (printf %(...)T). Sets no shell options. The wait helpers use
# sleep with fractions of a second, and wait_for_port uses timeout(1) when there is one.

# Prints each line of stdin prefixed with the current time; a last line without a newline
# is printed too.
_xrdtest_prefix_lines() {
    local line
    while IFS= read -r line || [[ -n "$line" ]]; do
        printf '[%(%H:%M:%S)T] %s\n' -1 "$line"
    done
}

log() {
    printf '[%(%H:%M:%S)T] %s\n' -1 "$*"
}

stamp() {
    if [[ $# -eq 0 ]]; then
        echo "stamp: usage: stamp COMMAND [ARG...]" >&2
        return 2
    fi
    local rc=0
    # The `|| true` keeps `set -e` (and `set -o pipefail`) of the caller from ending the
    # script inside this function before the status is returned.
    { "$@" 2>&1 | _xrdtest_prefix_lines; rc=${PIPESTATUS[0]}; } || true
    return "$rc"
}

assert_fail() {
    if [[ $# -eq 0 ]]; then
        echo "assert_fail: usage: assert_fail COMMAND [ARG...]" >&2
        return 2
    fi
    # A command tested by `if` never triggers `set -e`.
    if "$@"; then
        printf '[%(%H:%M:%S)T] assert_fail: command succeeded but was expected to fail: %s\n' -1 "$*" >&2
        return 1
    fi
    return 0
}

# Appends one line to the results file; fails (2) with a message when there is none.
_xrdtest_results_line() {
    if [[ -z "${XRDTEST_RESULTS:-}" ]]; then
        echo "$1: XRDTEST_RESULTS is not set (not run by an xrdtest slave?)" >&2
        return 2
    fi
    printf '%s\n' "$2" >>"$XRDTEST_RESULTS"
}

result() {
    if [[ $# -lt 2 || $# -gt 3 ]]; then
        echo "result: usage: result NAME VALUE [UNIT]" >&2
        return 2
    fi
    _xrdtest_results_line result "result $1 $2${3:+ $3}"
}

check() {
    if [[ $# -lt 2 || ( "$2" != pass && "$2" != fail ) ]]; then
        echo "check: usage: check NAME pass|fail [MESSAGE...]" >&2
        return 2
    fi
    local name=$1 verdict=$2
    shift 2
    # A message is one line in the file.
    local message="${*//$'\n'/ }"
    _xrdtest_results_line check "check $name $verdict${message:+ $message}"
}

# ---- Waiting -------------------------------------------------------------------------
#
# These run under the caller's shell options, `set -e`, `set -u` and `set -o pipefail`
# included: no command here may fail outside a condition, and `(( ))` is only used in one.

# Prints the duration $2 in whole milliseconds: 500ms, 10s, 2m, 1h, or a number of seconds
# (fractions allowed: 0.5, .25s). Fails (2) with a message naming $1 when it is not one.
_xrdtest_duration_ms() {
    local re='^([0-9]*)(\.([0-9]*))?(ms|s|m|h)?$' int frac mult
    if [[ ! $2 =~ $re ]] || [[ -z "${BASH_REMATCH[1]}${BASH_REMATCH[3]}" ]] || [[ ${#BASH_REMATCH[1]} -gt 9 ]]; then
        echo "$1: bad duration '$2' (use e.g. 500ms, 10s, 2m, 1h, or seconds: 5, 0.5)" >&2
        return 2
    fi
    int=${BASH_REMATCH[1]:-0}
    # Microseconds of a unit are more than enough: keep 6 digits of the fraction.
    frac="${BASH_REMATCH[3]}000000"
    frac=${frac:0:6}
    case ${BASH_REMATCH[4]:-s} in
        ms) mult=1 ;;
        s) mult=1000 ;;
        m) mult=60000 ;;
        h) mult=3600000 ;;
    esac
    echo "$(( 10#$int * mult + 10#$frac * mult / 1000000 ))"
}

# Sets the variable named $1 to the current time in milliseconds since the epoch.
_xrdtest_now_ms() {
    local _xrdtest_t
    if [[ -n "${EPOCHREALTIME:-}" ]]; then
        # Seconds and microseconds; the separator follows the locale (. or ,).
        _xrdtest_t=${EPOCHREALTIME//[!0-9]/}
        printf -v "$1" '%s' "$(( 10#$_xrdtest_t / 1000 ))"
        return 0
    fi
    _xrdtest_t=$(date +%s%N 2>/dev/null) || _xrdtest_t=
    if [[ $_xrdtest_t =~ ^[0-9]{16,}$ ]]; then
        printf -v "$1" '%s' "$(( 10#$_xrdtest_t / 1000000 ))"
    else
        # A date without %N: whole seconds.
        printf -v _xrdtest_t '%(%s)T' -1
        printf -v "$1" '%s' "$(( _xrdtest_t * 1000 ))"
    fi
}

# Sets the variable named $2 to $1 milliseconds written as seconds: 1500 -> 1.500.
_xrdtest_ms_to_s() {
    printf -v "$2" '%d.%03d' "$(( $1 / 1000 ))" "$(( $1 % 1000 ))"
}

# Sleeps $1 milliseconds.
_xrdtest_sleep_ms() {
    local s
    _xrdtest_ms_to_s "$1" s
    sleep "$s" || true
}

# Prints the time waited since $1 (milliseconds, from _xrdtest_now_ms) as "1.2s".
_xrdtest_waited() {
    local now ms
    _xrdtest_now_ms now
    ms=$(( now - $1 ))
    printf '%d.%ds' "$(( ms / 1000 ))" "$(( ms % 1000 / 100 ))"
}

# Sleeps until the next try of a wait that started at $1 (ms) with a timeout of $2 ms,
# $3 ms after this one but never past the timeout; fails when the timeout has passed.
_xrdtest_wait_next() {
    local now left
    _xrdtest_now_ms now
    left=$(( $1 + $2 - now ))
    if (( left <= 0 )); then
        return 1
    fi
    _xrdtest_sleep_ms "$(( left < $3 ? left : $3 ))"
}

# Reads the duration option starting the arguments after $1 and $2 (the function's name and
# usage line): `--timeout D` or `--timeout=D`. Sets the caller's locals _xrdtest_opt (the
# option), _xrdtest_opt_ms (its duration in milliseconds) and _xrdtest_opt_words (the words
# it took: 1 or 2). Fails (2) with a message when the duration is missing or bad.
_xrdtest_duration_option() {
    local who=$1 usage=$2 value
    shift 2
    if [[ $1 == *=* ]]; then
        _xrdtest_opt=${1%%=*} value=${1#*=} _xrdtest_opt_words=1
    elif [[ $# -ge 2 ]]; then
        _xrdtest_opt=$1 value=$2 _xrdtest_opt_words=2
    else
        echo "$who: $1 needs a duration" >&2
        echo "$usage" >&2
        return 2
    fi
    _xrdtest_opt_ms=$(_xrdtest_duration_ms "$who $_xrdtest_opt" "$value") || return 2
}

wait_until() {
    # Prefixed locals: bash scoping is dynamic, and CMD may use names of its own.
    local _xrdtest_wu_usage="wait_until: usage: wait_until [--timeout D] [--every D] [--] COMMAND [ARG...]"
    local _xrdtest_wu_timeout_ms=60000 _xrdtest_wu_every_ms=1000 _xrdtest_opt _xrdtest_opt_ms _xrdtest_opt_words
    while [[ $# -gt 0 ]]; do
        case $1 in
            --) shift; break ;;
            --timeout|--every|--timeout=*|--every=*)
                _xrdtest_duration_option wait_until "$_xrdtest_wu_usage" "$@" || return 2
                shift "$_xrdtest_opt_words"
                if [[ $_xrdtest_opt == --timeout ]]; then
                    _xrdtest_wu_timeout_ms=$_xrdtest_opt_ms
                elif [[ $_xrdtest_opt_ms -eq 0 ]]; then
                    echo "wait_until: --every must be more than 0" >&2
                    return 2
                else
                    _xrdtest_wu_every_ms=$_xrdtest_opt_ms
                fi
                ;;
            --*)
                echo "wait_until: unknown option $1" >&2
                echo "$_xrdtest_wu_usage" >&2
                return 2
                ;;
            *) break ;;
        esac
    done
    if [[ $# -eq 0 ]]; then
        echo "$_xrdtest_wu_usage" >&2
        return 2
    fi
    local _xrdtest_wu_start _xrdtest_wu_tries=0 _xrdtest_wu_rc=0
    _xrdtest_now_ms _xrdtest_wu_start
    while :; do
        _xrdtest_wu_tries=$(( _xrdtest_wu_tries + 1 ))
        # A command tested by `if` never triggers `set -e`.
        if "$@"; then
            return 0
        else
            _xrdtest_wu_rc=$?
        fi
        if ! _xrdtest_wait_next "$_xrdtest_wu_start" "$_xrdtest_wu_timeout_ms" "$_xrdtest_wu_every_ms"; then
            break
        fi
    done
    printf '[%(%H:%M:%S)T] wait_until: timed out after %s (%d tries, last exit status %d): %s\n' \
        -1 "$(_xrdtest_waited "$_xrdtest_wu_start")" "$_xrdtest_wu_tries" "$_xrdtest_wu_rc" "$*" >&2
    return 1
}

# Parses the arguments of wait_for_port and monitor_log ($1: the function's name, $2: its
# usage line, then its arguments): sets `timeout_ms` and the array `args` (the other
# arguments) of the caller. Fails (2) with a message on a usage error.
_xrdtest_wait_args() {
    local who=$1 usage=$2 _xrdtest_opt _xrdtest_opt_ms _xrdtest_opt_words
    shift 2
    while [[ $# -gt 0 ]]; do
        case $1 in
            --)
                shift
                args+=("$@")
                break
                ;;
            --timeout|--timeout=*)
                _xrdtest_duration_option "$who" "$usage" "$@" || return 2
                shift "$_xrdtest_opt_words"
                timeout_ms=$_xrdtest_opt_ms
                ;;
            --*)
                echo "$who: unknown option $1" >&2
                echo "$usage" >&2
                return 2
                ;;
            *)
                args+=("$1")
                shift
                ;;
        esac
    done
}

# Tries one TCP connect to $1:$2, bounded to $3 milliseconds; 0 when it succeeded.
_xrdtest_tcp_try() {
    local secs pid waited=0
    _xrdtest_ms_to_s "$3" secs
    # shellcheck disable=SC2016 # $1 and $2 are expanded by the inner bash.
    local connect='exec 3<>"/dev/tcp/$1/$2"'
    if command -v timeout >/dev/null 2>&1; then
        timeout "$secs" "${BASH:-bash}" -c "$connect" _ "$1" "$2" 2>/dev/null
        return
    fi
    # Without timeout(1): the try runs in the background and is ended at the bound; it is
    # always waited for, so nothing is left behind.
    "${BASH:-bash}" -c "$connect" _ "$1" "$2" 2>/dev/null &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        if (( waited >= $3 )); then
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.05 || true
        waited=$(( waited + 50 ))
    done
    wait "$pid" 2>/dev/null
}

wait_for_port() {
    local usage="wait_for_port: usage: wait_for_port HOST PORT [--timeout D]"
    local timeout_ms=60000
    local -a args=()
    _xrdtest_wait_args wait_for_port "$usage" "$@" || return 2
    if [[ ${#args[@]} -ne 2 || -z "${args[0]}" ]]; then
        echo "$usage" >&2
        return 2
    fi
    local host=${args[0]} port=${args[1]}
    if [[ ! $port =~ ^[0-9]{1,5}$ ]] || (( 10#$port < 1 || 10#$port > 65535 )); then
        echo "wait_for_port: bad port '$port' (1..65535)" >&2
        return 2
    fi
    port=$(( 10#$port ))
    local start now left tries=0
    _xrdtest_now_ms start
    while :; do
        tries=$(( tries + 1 ))
        # Each try gets 1s at most, and no more than what is left (but 0.1s at least).
        _xrdtest_now_ms now
        left=$(( start + timeout_ms - now ))
        if (( left > 1000 )); then
            left=1000
        elif (( left < 100 )); then
            left=100
        fi
        if _xrdtest_tcp_try "$host" "$port" "$left"; then
            return 0
        fi
        if ! _xrdtest_wait_next "$start" "$timeout_ms" 200; then
            break
        fi
    done
    printf '[%(%H:%M:%S)T] wait_for_port: %s:%s not reachable after %s (%d tries)\n' \
        -1 "$host" "$port" "$(_xrdtest_waited "$start")" "$tries" >&2
    return 1
}

# Sets the variables named $2 and $3 to the inode and the size in bytes of the file $1;
# fails when it cannot be read.
_xrdtest_file_state() {
    local _xrdtest_out _xrdtest_id _xrdtest_rest _xrdtest_size
    _xrdtest_out=$(ls -diL -- "$1" 2>/dev/null) || return 1
    read -r _xrdtest_id _xrdtest_rest <<<"$_xrdtest_out"
    _xrdtest_size=$(wc -c 2>/dev/null <"$1") || return 1
    _xrdtest_size=${_xrdtest_size//[!0-9]/}
    if [[ -z $_xrdtest_size ]]; then
        return 1
    fi
    printf -v "$2" '%s' "$_xrdtest_id"
    printf -v "$3" '%s' "$_xrdtest_size"
}

monitor_log() {
    local usage="monitor_log: usage: monitor_log FILE PATTERN [--timeout D]"
    local timeout_ms=60000
    local -a args=()
    _xrdtest_wait_args monitor_log "$usage" "$@" || return 2
    if [[ ${#args[@]} -ne 2 || -z "${args[0]}" ]]; then
        echo "$usage" >&2
        return 2
    fi
    local file=${args[0]} pattern=${args[1]} grc=0
    # A bad pattern is a usage error (grep says why), not a timeout.
    grep -E -e "$pattern" </dev/null >/dev/null || grc=$?
    if [[ $grc -gt 1 ]]; then
        echo "monitor_log: bad pattern: $pattern" >&2
        return 2
    fi
    # Where the new bytes start, and which file (inode) they are in.
    local offset=0 id="" fid size chunk data partial="" line start
    if _xrdtest_file_state "$file" id size; then
        offset=$size
    fi
    _xrdtest_now_ms start
    while :; do
        if _xrdtest_file_state "$file" fid size; then
            if [[ $fid != "$id" ]]; then
                if [[ -n $id ]]; then
                    # Replaced (rotated): all of the new file is new.
                    offset=0 partial=""
                fi
                id=$fid
            fi
            if (( size < offset )); then
                # Truncated: read it again from its start.
                offset=0 partial=""
            fi
            if (( size > offset )); then
                # Exactly the bytes offset..size, so that the next poll goes on from there;
                # NUL bytes (which bash cannot hold) dropped; the x keeps final newlines.
                chunk=$( { tail -c +"$(( offset + 1 ))" -- "$file" | head -c "$(( size - offset ))" | tr -d '\000'; } 2>/dev/null || true; echo x)
                chunk=${chunk%x}
                offset=$size
                data=$partial$chunk
                if [[ $data == *$'\n'* ]]; then
                    # Complete lines are matched; an unfinished last one waits for its end.
                    partial=${data##*$'\n'}
                    if line=$(grep -a -E -m 1 -e "$pattern" <<<"${data%$'\n'*}"); then
                        printf '%s\n' "$line"
                        return 0
                    fi
                else
                    partial=$data
                fi
            fi
        fi
        if ! _xrdtest_wait_next "$start" "$timeout_ms" 200; then
            break
        fi
    done
    printf '[%(%H:%M:%S)T] monitor_log: no line matching %s written to %s within %s\n' \
        -1 "$pattern" "$file" "$(_xrdtest_waited "$start")" >&2
    return 1
}

# ---- Sync and faults -------------------------------------------------------------------
#
# Thin wrappers over the slave program ($XRDTEST_SLAVE_BIN), which talks to the slave
# through its sync socket ($XRDTEST_SYNC).

_xrdtest_slave_call() {
    if [[ -z "${XRDTEST_SLAVE_BIN:-}" ]]; then
        echo "$1: XRDTEST_SLAVE_BIN is not set (not run by an xrdtest slave?)" >&2
        return 2
    fi
    "$XRDTEST_SLAVE_BIN" "${@:2}"
}

sync_signal() { _xrdtest_slave_call sync_signal sync signal "$@"; }
sync_wait() { _xrdtest_slave_call sync_wait sync wait "$@"; }
sync_barrier() { _xrdtest_slave_call sync_barrier sync barrier "$@"; }
sync_publish() { _xrdtest_slave_call sync_publish sync publish "$@"; }
sync_subscribe() { _xrdtest_slave_call sync_subscribe sync subscribe "$@"; }

fault_partition() { _xrdtest_slave_call fault_partition fault partition "$@"; }
fault_netem() { _xrdtest_slave_call fault_netem fault netem "$@"; }
fault_pause() { _xrdtest_slave_call fault_pause fault pause "$@"; }
fault_resume() { _xrdtest_slave_call fault_resume fault resume "$@"; }
fault_kill() { _xrdtest_slave_call fault_kill fault kill "$@"; }
fault_heal() { _xrdtest_slave_call fault_heal fault heal "$@"; }
