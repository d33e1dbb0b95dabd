#!/bin/bash
rm -rf "@workdir@/@slavename@/@mode@-@block_kib@"
