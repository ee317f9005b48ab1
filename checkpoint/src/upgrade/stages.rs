//! Stage timing: each stage's duration, printed as a table and stored in the image.

use seamless_image::upgrade::Stage;
use std::time::Instant;

/// Measures consecutive stages.
#[derive(Debug)]
pub struct StageClock {
    start: Instant,
    last: Instant,
    stages: Vec<Stage>,
}

impl Default for StageClock {
    fn default() -> Self {
        Self::new()
    }
}

impl StageClock {
    /// Starts the clock.
    pub fn new() -> Self {
        let now = Instant::now();
        Self { start: now, last: now, stages: Vec::new() }
    }

    /// Ends the current stage under `name`.
    pub fn stage(&mut self, name: &str) {
        let now = Instant::now();
        self.stages.push(Stage { name: name.into(), micros: (now - self.last).as_micros() as u64 });
        self.last = now;
    }

    /// The length of the last stage, in seconds.
    pub fn last_secs(&self) -> f64 {
        self.stages.last().map_or(0.0, |s| s.micros as f64 / 1e6)
    }

    /// The stages so far.
    pub fn stages(&self) -> Vec<Stage> {
        self.stages.clone()
    }

    /// A printable table.
    pub fn table(&self) -> String {
        let mut s = String::from("stage              time\n");
        for st in &self.stages {
            s += &format!("{:<18} {:>8.1} ms\n", st.name, st.micros as f64 / 1000.0);
        }
        s += &format!("{:<18} {:>8.1} ms\n", "total", self.start.elapsed().as_secs_f64() * 1000.0);
        s
    }
}

/// CLOCK_REALTIME in nanoseconds.
pub fn realtime_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}
