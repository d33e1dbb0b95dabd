#!/bin/bash
set -e
source "$XRDTEST_FUNCTIONS"
cd @datadir@/@slavename@
head -c $((@payload_kib@ * 1024)) /dev/urandom > payload.bin
sha256sum payload.bin > payload.sha256
stamp ls -l payload.bin payload.sha256
echo "wrote payload.bin" >> demo.log
