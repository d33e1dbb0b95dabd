#!/bin/bash
pkill -x xrootd || true
pkill -x cmsd || true
rm -rf /etc/xrootd/xrootd-test.cfg /etc/xrootd/test
