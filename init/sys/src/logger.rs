//! The one `log` backend of seamless, for both binaries: every message is one line
//! `PREFIX: text` (with the level word after the prefix where the configuration asks for it,
//! as the operator's command does), written to standard error until [`attach_kmsg`] opens
//! `/dev/kmsg` (`kmsg(4)`), after which each message is one kernel log record with its
//! priority (`<3>` error ... `<7>` debug), as `seamless-init` logs on the new kernel.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::{Mutex, OnceLock};

#[derive(Debug)]
struct Config {
    prefix: &'static str,
    level_word: bool,
}

#[derive(Debug)]
struct Logger {
    config: OnceLock<Config>,
    kmsg: Mutex<Option<File>>,
}

static LOGGER: Logger = Logger { config: OnceLock::new(), kmsg: Mutex::new(None) };

/// The `kmsg(4)` priority of a level.
fn priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// The line of a message, without the kernel log priority.
fn line(prefix: &str, level_word: bool, level: log::Level, text: &std::fmt::Arguments) -> String {
    if level_word {
        format!("{prefix}: {}: {text}\n", level.as_str().to_lowercase())
    } else {
        format!("{prefix}: {text}\n")
    }
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let Some(c) = self.config.get() else { return };
        let text = line(c.prefix, c.level_word, r.level(), r.args());
        let mut kmsg = match self.kmsg.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        // One write per message: /dev/kmsg turns each write into one record.
        let to_kmsg =
            kmsg.as_mut().is_some_and(|f| f.write_all(format!("<{}>{text}", priority(r.level())).as_bytes()).is_ok());
        if !to_kmsg {
            let _ = std::io::stderr().write_all(text.as_bytes());
        }
    }

    fn flush(&self) {}
}

/// Installs the logger: lines start with `prefix` (and the level word if `level_word`), at
/// most `level`, to standard error until [`attach_kmsg`]. Only the first call configures it.
pub fn init(prefix: &'static str, level_word: bool, level: log::LevelFilter) {
    let _ = LOGGER.config.set(Config { prefix, level_word });
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Sends every later message to the kernel log (`/dev/kmsg`).
pub fn attach_kmsg() -> std::io::Result<()> {
    let f = OpenOptions::new().write(true).open("/dev/kmsg")?;
    let mut guard = match LOGGER.kmsg.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    *guard = Some(f);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_the_prefix_and_optionally_the_level() {
        let l = line("seamless", true, log::Level::Warn, &format_args!("pid {}: gone", 7));
        assert_eq!(l, "seamless: warn: pid 7: gone\n");
        let l = line("seamless-init", false, log::Level::Error, &format_args!("x"));
        assert_eq!(l, "seamless-init: x\n");
        assert_eq!(priority(log::Level::Debug), 7);
    }
}
