#!/bin/bash
echo "init of fails_on_purpose on @slavename@: nothing to prepare"
