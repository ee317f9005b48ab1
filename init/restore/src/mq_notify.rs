//! `mq_notify(3)` registrations ([`MqNotify`] records), made again by the registered process
//! through its own descriptor of the queue, once its descriptors are in place (the queues hold
//! their messages again since before the processes were forked, and a registration fires only
//! when a message arrives in an empty queue, so nothing fires here).

use crate::tracee::Tracee;
use crate::RestoreError;
use seamless_image::records::MqNotify;

/// The `struct sigevent` (64 bytes) of a registration, as words.
fn sigevent(value: u64, signo: i32, notify: i32) -> [u64; 8] {
    let mut w = [0u64; 8];
    w[0] = value;
    w[1] = u64::from(signo.cast_unsigned()) | (u64::from(notify.cast_unsigned()) << 32);
    w
}

/// Registers process `c` again on each of its queues.
pub fn register<T: Tracee + ?Sized>(c: &mut T, regs: Option<&MqNotify>) -> Result<(), RestoreError> {
    for r in regs.map(|m| m.regs.as_slice()).unwrap_or(&[]) {
        let a = c.scratch().put_words(c, &sigevent(r.value, r.signo, r.notify))?;
        c.call_for(
            format!("fd {}: mq_notify(signal {}, notify {})", r.fd, r.signo, r.notify),
            "mq_notify",
            libc::SYS_mq_notify,
            [u64::from(r.fd.cast_unsigned()), a, 0, 0, 0, 0],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracee::fake::Recorder;
    use seamless_image::records::MqNotification;

    #[test]
    fn each_registration_is_made_through_its_descriptor_with_its_sigevent() {
        let mut t = Recorder::new(42);
        let regs = MqNotify {
            regs: vec![
                MqNotification { fd: 5, notify: MqNotification::SIGEV_SIGNAL, signo: 40, value: 0xfeed },
                MqNotification { fd: 7, notify: MqNotification::SIGEV_NONE, signo: 0, value: 0 },
            ],
        };
        register(&mut t, Some(&regs)).unwrap();
        let calls = t.named("mq_notify");
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].args[0], 5);
        let ev = calls[0].mem(calls[0].args[1], 16);
        assert_eq!(&ev[..8], &0xfeedu64.to_le_bytes());
        assert_eq!(&ev[8..12], &40i32.to_le_bytes());
        assert_eq!(&ev[12..16], &0i32.to_le_bytes());
        assert_eq!(calls[1].args[0], 7);
        assert_eq!(&calls[1].mem(calls[1].args[1], 16)[12..16], &1i32.to_le_bytes());
        register(&mut t, None).unwrap();
        assert_eq!(t.named("mq_notify").len(), 2);
    }
}
