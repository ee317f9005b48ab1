#!/bin/sh
# dracut pre-mount hook: before the root filesystem is mounted, let seamless-init compare it
# with the identity recorded in a preserved image. The verdict goes to /run/seamless/, which
# survives the switch to the real root, where seamless-init (as init=) reads it; an image that
# was appended to this initramfs is carried there too. Without an image this does nothing; a
# refusal is logged and the boot goes on normally.
#
# dracut sources this file (classic: inside its /init; systemd flavour: inside
# dracut-pre-mount), so it must end with `return`, never `exit`: an `exit` would end /init
# itself, or skip the later pre-mount hooks and dracut's state export.
type getarg >/dev/null 2>&1 || . /lib/dracut-lib.sh

_seamless_dev="${root#block:}"
case "$_seamless_dev" in
    "" | /dev/nfs | nfs* | cifs* | zfs* | live* | overlay*)
        unset _seamless_dev
        return 0
        ;;
esac
if ! /usr/lib/seamless/seamless-init verify-root --device "$_seamless_dev"; then
    warn "seamless: preserved processes will not be restored (see the kernel log)"
fi
unset _seamless_dev
return 0
