#!/bin/bash
echo "case $XRDTEST_CASE on @slavename@, stage $XRDTEST_STAGE"
