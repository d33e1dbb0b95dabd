#!/bin/bash
# Remove this case's copies, so that another session's case starts from nothing.
source "$XRDTEST_FUNCTIONS"
case " @roles@ " in
  *" client "*) rm -f "$XRDTEST_WORKDIR"/replica.src "$XRDTEST_WORKDIR"/replica.dst* ;;
  *" data "*) rm -f "@datadir@/@slavename@@datadir@/replica-$XRDTEST_SESSION.dat" ;;
esac
true
