//! The running kernel's release (`uname(2)`, the `release` field), the one way seamless asks
//! which kernel it runs on. Unlike `/proc/sys/kernel/osrelease` it needs no mounted `/proc`,
//! so PID 1 of an initramfs can ask first thing.

/// The running kernel's release, e.g. `6.12.12-amd64` (empty if `uname` fails, which it
/// does not on Linux).
///
/// Man page: `uname(2)`.
pub fn kernel_release() -> String {
    // SAFETY: `utsname` is plain data of arrays of `c_char`, for which all zeros is valid.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable `utsname`; `uname` fills it and nothing else.
    if unsafe { libc::uname(&mut u) } != 0 {
        return String::new();
    }
    // `c_char` is i8 on x86-64 and u8 on aarch64: its bits as a byte either way.
    let bytes: Vec<u8> =
        u.release.iter().take_while(|&&c| c != 0).map(|&c| u8::from_ne_bytes(c.to_ne_bytes())).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_proc() {
        let proc = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        assert_eq!(super::kernel_release(), proc.trim());
    }
}
