//! Opt-in step timings for profiling (`NETHOOK_TIMING=1`): one line on stderr saying
//! where a hook's time went. Off by default, so hooks stay silent on success paths
//! other than their one summary line.

use std::time::{Duration, Instant};

pub struct Steps {
    enabled: bool,
    last: Instant,
    start: Instant,
    marks: Vec<(&'static str, Duration)>,
}

impl Steps {
    pub fn from_env() -> Self {
        let now = Instant::now();
        Steps {
            enabled: std::env::var_os("NETHOOK_TIMING").is_some(),
            last: now,
            start: now,
            marks: Vec::new(),
        }
    }

    /// Records the time since the previous mark under `label`.
    pub fn mark(&mut self, label: &'static str) {
        if self.enabled {
            let now = Instant::now();
            self.marks.push((label, now - self.last));
            self.last = now;
        }
    }

    /// Prints `nethook: timing <what>: a 0.12ms, b 0.40ms, total 0.52ms`.
    pub fn report(&self, what: &str) {
        if !self.enabled {
            return;
        }
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let parts: Vec<String> = self
            .marks
            .iter()
            .map(|(l, d)| format!("{l} {:.2}ms", ms(*d)))
            .collect();
        crate::log::line(&format!(
            "timing {what}: {}, total {:.2}ms",
            parts.join(", "),
            ms(self.start.elapsed())
        ));
    }
}
