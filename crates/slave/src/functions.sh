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
