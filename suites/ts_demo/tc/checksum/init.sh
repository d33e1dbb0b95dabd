#!/bin/bash
set -e
test -f @datadir@/@slavename@/payload.bin
