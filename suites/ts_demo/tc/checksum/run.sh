#!/bin/bash
set -e
source "$XRDTEST_FUNCTIONS"
cd @datadir@/@slavename@
sleep 1
started=$(date +%s%N)
stamp sha256sum -c payload.sha256
# A measured value: on the session page, in the reports, and plotted on the trends page.
result sha256_ms $(( ($(date +%s%N) - started) / 1000000 )) ms
size=$(stat -c %s payload.bin)
# A named sub-result: a failed check fails the stage even though the script goes on.
if [ "$size" -eq $((@payload_kib@ * 1024)) ]; then
  check payload_size pass "$size bytes"
else
  check payload_size fail "$size bytes, expected $((@payload_kib@ * 1024))"
fi
# A command that must fail, checked with assert_fail.
assert_fail cat no-such-file
log "checksum and size of payload.bin verified on @slavename@"
echo "checked payload.bin" >> demo.log
