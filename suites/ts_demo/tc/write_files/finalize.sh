#!/bin/bash
source "$XRDTEST_FUNCTIONS"
log "write_files done on @slavename@"
