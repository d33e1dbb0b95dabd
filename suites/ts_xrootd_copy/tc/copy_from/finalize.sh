#!/bin/bash
rm -f /tmp/copy_to.src /tmp/copy_from.dst /tmp/wrong.keytab /tmp/wrong.dst /tmp/wrong.err
