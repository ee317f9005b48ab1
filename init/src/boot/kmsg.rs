//! A `log` backend writing to `/dev/kmsg`, so the early boot stage's messages land in the
//! kernel log (and on the console) with the prefix `seamless-init:`. Until `/dev` is mounted,
//! messages go to standard error, which is the console for PID 1.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;

/// The prefix of every message.
pub const PREFIX: &str = "seamless-init";

#[derive(Debug)]
struct KmsgLogger {
    file: Mutex<Option<File>>,
}

static LOGGER: KmsgLogger = KmsgLogger { file: Mutex::new(None) };

fn priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

impl log::Log for KmsgLogger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        // One write per message: /dev/kmsg turns each write into one record.
        let line = format!("<{}>{PREFIX}: {}\n", priority(r.level()), r.args());
        let mut guard = match self.file.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let written = guard.as_mut().is_some_and(|f| f.write_all(line.as_bytes()).is_ok());
        if !written {
            let _ = std::io::stderr().write_all(&line.as_bytes()[3..]);
        }
    }

    fn flush(&self) {}
}

/// Installs the logger (to standard error until [`attach`] succeeds).
pub fn init(debug: bool) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(if debug { log::LevelFilter::Debug } else { log::LevelFilter::Info });
}

/// Enables or disables debug messages.
pub fn set_debug(debug: bool) {
    log::set_max_level(if debug { log::LevelFilter::Debug } else { log::LevelFilter::Info });
}

/// Opens `/dev/kmsg`; from now on messages go to the kernel log.
pub fn attach() -> std::io::Result<()> {
    let f = OpenOptions::new().write(true).open("/dev/kmsg")?;
    let mut guard = match LOGGER.file.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    *guard = Some(f);
    Ok(())
}
