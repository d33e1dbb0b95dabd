#!/bin/bash
pkill -x xrootd || true
pkill -x cmsd || true
rm -f /etc/xrootd/xrootd-test.cfg
