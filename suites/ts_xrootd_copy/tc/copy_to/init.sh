#!/bin/bash
# The client makes a 10 MiB file of random bytes and notes its checksum.
set -e
case "@slavename@" in
  client1.*) head -c 10485760 /dev/urandom > /tmp/copy_to.src && sha256sum /tmp/copy_to.src ;;
esac
