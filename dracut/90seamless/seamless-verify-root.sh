#!/bin/sh
# dracut pre-mount hook: before the root filesystem is mounted, let seamless-init compare it
# with the identity recorded in a preserved image. The verdict goes to /run/seamless/, which
# survives the switch to the real root, where seamless-init (as init=) reads it. Without an
# image this does nothing; a refusal is logged and the boot goes on normally.
type getarg >/dev/null 2>&1 || . /lib/dracut-lib.sh

dev="${root#block:}"
case "$dev" in
    ""|/dev/nfs|nfs*|cifs*) exit 0 ;;
esac
/usr/lib/seamless/seamless-init verify-root --device "$dev" || \
    warn "seamless: preserved processes will not be restored (see the kernel log)"
exit 0
