#!/bin/bash
set -e
source "$XRDTEST_FUNCTIONS"
cd @datadir@/@slavename@
sleep 1   # slow enough to watch in the demo
started=$(date +%s%N)
head -c $((@payload_kib@ * 1024)) /dev/urandom > payload.bin
result write_ms $(( ($(date +%s%N) - started) / 1000000 )) ms
sha256sum payload.bin > payload.sha256
stamp ls -l payload.bin payload.sha256
echo "wrote payload.bin" >> demo.log
