#!/bin/bash
set -e
source "$XRDTEST_FUNCTIONS"
cd "@workdir@/@slavename@/@mode@-@block_kib@"
flag=""
[ "@mode@" = sync ] && flag="oflag=sync"
for i in $(seq 1 @files@); do
    dd if=/dev/zero of="f$i" bs=@block_kib@k count=4 $flag status=none
    test "$(stat -c %s "f$i")" -eq $((@block_kib@ * 1024 * 4))
done
log "@files@ files of 4 × @block_kib@ KiB written (@mode@) on @slavename@"
