#!/bin/bash
echo "list_peers finalized on @slavename@"
