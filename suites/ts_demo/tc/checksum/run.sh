#!/bin/bash
set -e
source "$XRDTEST_FUNCTIONS"
cd @datadir@/@slavename@
sleep 1
stamp sha256sum -c payload.sha256
size=$(stat -c %s payload.bin)
test "$size" -eq $((@payload_kib@ * 1024))
# A command that must fail, checked with assert_fail.
assert_fail cat no-such-file
log "checksum and size of payload.bin verified on @slavename@"
echo "checked payload.bin" >> demo.log
