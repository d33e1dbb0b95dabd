#!/bin/bash
set -e
source "$XRDTEST_FUNCTIONS"
cd @datadir@/@slavename@
sleep 1   # slow enough to watch in the demo
head -c $((@payload_kib@ * 1024)) /dev/urandom > payload.bin
sha256sum payload.bin > payload.sha256
stamp ls -l payload.bin payload.sha256
echo "wrote payload.bin" >> demo.log
