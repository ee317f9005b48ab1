#!/bin/bash
# dracut module "seamless": packs seamless-init and the persistent-memory modules into the
# initramfs, and checks the root filesystem against a preserved seamless image before dracut
# mounts it.
#
# Hand-over: restored processes must not be started inside the initramfs, because a systemd
# initramfs kills every process it did not start itself at switch-root. So the initramfs part
# only verifies (hook below); `seamless upgrade` boots the new kernel with
# init=/usr/lib/seamless/seamless-init, which runs as PID 1 on the real root after the
# switch, restores the processes there and then executes the real init (seamless.init=, or
# /sbin/init). This works the same with dracut's systemd and classic (shell) initramfs.

# Only when asked for (`dracut --add seamless`, or add_dracutmodules+=" seamless " in a file
# of /etc/dracut.conf.d/ such as dracut/seamless.conf): a plain `dracut --force`, as run by a
# distribution's kernel package, must not pull it in.
check() {
    require_binaries /usr/lib/seamless/seamless-init || return 1
    return 255
}

depends() {
    return 0
}

installkernel() {
    # Present on every machine that may receive a region through memmap=SIZE!OFFSET.
    hostonly='' instmods libnvdimm nd_pmem nd_e820
}

install() {
    inst_simple /usr/lib/seamless/seamless-init
    inst_hook pre-mount 10 "$moddir/seamless-verify-root.sh"
}
