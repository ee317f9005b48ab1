//! A captured byte stream (the serial console or the control port) with a host timestamp on
//! every line, and waiting on it with a deadline.

use std::io::Read;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// One complete line and when the host received its end.
#[derive(Debug, Clone)]
pub struct Line {
    /// Time since the VM was started.
    pub at: Duration,
    /// The text, without `\r` and `\n`.
    pub text: String,
}

/// What a stream holds so far.
#[derive(Debug, Default)]
pub struct Data {
    /// Everything received, as text (`\r` removed).
    pub text: String,
    /// Complete lines.
    pub lines: Vec<Line>,
    /// The producer closed the stream (QEMU exited).
    pub eof: bool,
    /// The last line so far, not ended yet (a prompt waiting for input).
    pub partial: String,
}

/// A stream shared between its reader thread and the harness.
#[derive(Debug, Clone)]
pub struct Stream {
    inner: Arc<(Mutex<Data>, Condvar)>,
    epoch: Instant,
    log: Option<Arc<Mutex<std::fs::File>>>,
    echo: Option<&'static str>,
}

/// Why a wait ended without a match.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The deadline passed.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Nothing new arrived for that long.
    #[error("no output for {0:?}")]
    Stalled(Duration),
    /// The stream ended first.
    #[error("the VM's output ended (QEMU exited)")]
    Eof,
}

impl Stream {
    /// A new stream; lines are also appended to `log` and, with `echo`, printed with that prefix.
    pub fn new(epoch: Instant, log: Option<std::fs::File>, echo: Option<&'static str>) -> Self {
        Self {
            inner: Arc::new((Mutex::new(Data::default()), Condvar::new())),
            epoch,
            log: log.map(|f| Arc::new(Mutex::new(f))),
            echo,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Data> {
        self.inner.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends received bytes.
    pub fn push(&self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes).replace('\r', "");
        let at = self.epoch.elapsed();
        let mut d = self.lock();
        d.text.push_str(&text);
        for ch in text.chars() {
            if ch == '\n' {
                let line = std::mem::take(&mut d.partial);
                if let Some(log) = &self.log {
                    use std::io::Write;
                    let _ =
                        writeln!(log.lock().unwrap_or_else(|p| p.into_inner()), "[{:9.3}] {line}", at.as_secs_f64());
                }
                if let Some(prefix) = self.echo {
                    eprintln!("{prefix} [{:8.3}] {line}", at.as_secs_f64());
                }
                d.lines.push(Line { at, text: line });
            } else {
                d.partial.push(ch);
            }
        }
        self.inner.1.notify_all();
    }

    /// Marks the end of the stream.
    pub fn close(&self) {
        self.lock().eof = true;
        self.inner.1.notify_all();
    }

    /// Copies everything from `r` into the stream on a new thread, then closes it.
    pub fn pump(&self, mut r: impl Read + Send + 'static) {
        let s = self.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                s.push(&buf[..n]);
            }
            s.close();
        });
    }

    /// Calls `f` on the data until it returns `Some`, the stream ends or `timeout` passes.
    pub fn wait<T>(&self, timeout: Duration, f: impl FnMut(&Data) -> Option<T>) -> Result<T, WaitError> {
        // A stall can never end it first: the idle deadline is never before the cap.
        self.wait_progressing(timeout, timeout, f)
    }

    /// [`Stream::wait`] for a command that reports its progress: gives up when nothing new has
    /// arrived for `idle` (a stall) or, progressing, after `cap` in all.
    pub fn wait_progressing<T>(
        &self,
        idle: Duration,
        cap: Duration,
        mut f: impl FnMut(&Data) -> Option<T>,
    ) -> Result<T, WaitError> {
        let start = Instant::now();
        let mut seen = self.lock().text.len();
        let mut last = start;
        let mut d = self.lock();
        loop {
            if let Some(v) = f(&d) {
                return Ok(v);
            }
            if d.eof {
                return Err(WaitError::Eof);
            }
            let now = Instant::now();
            if d.text.len() != seen {
                seen = d.text.len();
                last = now;
            }
            let deadline = (last + idle).min(start + cap);
            if now >= deadline {
                return Err(if now >= start + cap { WaitError::Timeout(cap) } else { WaitError::Stalled(idle) });
            }
            d = self.inner.1.wait_timeout(d, deadline - now).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Runs `f` on the current data.
    pub fn with<T>(&self, f: impl FnOnce(&Data) -> T) -> T {
        f(&self.lock())
    }

    /// The last `n` complete lines (and the unfinished one), formatted with timestamps.
    pub fn tail(&self, n: usize) -> String {
        let d = self.lock();
        let mut out: Vec<String> =
            d.lines.iter().rev().take(n).rev().map(|l| format!("[{:9.3}] {}", l.at.as_secs_f64(), l.text)).collect();
        if !d.partial.is_empty() {
            out.push(format!("[  partial] {}", d.partial));
        }
        out.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream fed `line` every `every` by a thread, for `total`.
    fn fed(every: Duration, total: Duration, line: &'static str) -> Stream {
        let s = Stream::new(Instant::now(), None, None);
        let t = s.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            while start.elapsed() < total {
                t.push(line.as_bytes());
                std::thread::sleep(every);
            }
            t.push(b"done\n");
        });
        s
    }

    #[test]
    fn a_progressing_command_outlives_its_idle_deadline() {
        let s = fed(Duration::from_millis(100), Duration::from_secs(3), "step\n");
        let t0 = Instant::now();
        let r = s.wait_progressing(Duration::from_secs(2), Duration::from_secs(60), |d| {
            d.text.contains("done").then_some(())
        });
        assert!(r.is_ok(), "{r:?}");
        assert!(t0.elapsed() >= Duration::from_secs(2), "ended before the idle deadline: nothing was tested");
    }

    #[test]
    fn a_silent_command_stalls_and_a_chatty_one_hits_the_cap() {
        let quiet = Stream::new(Instant::now(), None, None);
        let r = quiet.wait_progressing(Duration::from_millis(300), Duration::from_secs(60), |_| None::<()>);
        assert!(matches!(r, Err(WaitError::Stalled(_))), "{r:?}");
        let chatty = fed(Duration::from_millis(50), Duration::from_secs(30), "step\n");
        let r = chatty.wait_progressing(Duration::from_secs(10), Duration::from_secs(1), |_| None::<()>);
        assert!(matches!(r, Err(WaitError::Timeout(_))), "{r:?}");
    }
}
