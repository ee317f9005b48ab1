//! `seamless-init`'s log: the kernel log (and so the console) with the prefix
//! `seamless-init:`, through the one logger of seamless ([`seamless_sys::logger`]). Until
//! `/dev` is mounted, messages go to standard error, which is the console for PID 1.

/// The prefix of every message.
pub const PREFIX: &str = "seamless-init";

fn level(debug: bool) -> log::LevelFilter {
    if debug {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    }
}

/// Installs the logger (to standard error until [`attach`] succeeds).
pub fn init(debug: bool) {
    seamless_sys::logger::init(PREFIX, false, level(debug));
}

/// Enables or disables debug messages.
pub fn set_debug(debug: bool) {
    log::set_max_level(level(debug));
}

/// Opens `/dev/kmsg`; from now on messages go to the kernel log.
pub fn attach() -> std::io::Result<()> {
    seamless_sys::logger::attach_kmsg()
}
