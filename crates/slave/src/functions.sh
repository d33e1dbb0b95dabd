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
#
# `result` and `check` append lines to the file named by $XRDTEST_RESULTS; any program may
# write the same lines there itself (`result NAME VALUE [UNIT]`, `check NAME pass|fail
# [MESSAGE]`, one per line). The slave checks them when the stage ends: bad lines are
# reported in the stage output and left out.
#
# Needs bash 4.2 or later (printf %(...)T). Sets no shell options.

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
