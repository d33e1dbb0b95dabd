#!/bin/bash
set -e
mkdir -p "@workdir@/@slavename@/@mode@-@block_kib@"
