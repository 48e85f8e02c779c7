//! Progress: a bar per layer (bytes, rate, ETA) on a terminal, plain lines
//! (every tenth of a layer) otherwise.

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Instant;

/// A layer's bar: its digest, the bar, bytes done of all, rate, time left.
const BAR_TEMPLATE: &str =
    "{prefix:>19} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}";

pub struct Progress {
    multi: Option<MultiProgress>,
}

impl Progress {
    pub fn new() -> Progress {
        let multi = std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress { multi }
    }

    /// A line for the user, above any bars.
    pub fn say(&self, line: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    /// A tracker for `total` bytes of `label`, `done` of them already there.
    pub fn bar(&self, label: &str, total: u64, done: u64) -> Bar {
        let bar = self.multi.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new(total));
            bar.set_style(
                ProgressStyle::with_template(BAR_TEMPLATE)
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(label.to_string());
            bar.set_position(done);
            bar.reset_eta();
            bar
        });
        Bar {
            bar,
            label: label.to_string(),
            total,
            state: Mutex::new((done, done * 10 / total.max(1), Instant::now())),
            started_at: done,
        }
    }
}

pub struct Bar {
    bar: Option<ProgressBar>,
    label: String,
    total: u64,
    /// Bytes done, tenths reported, start.
    state: Mutex<(u64, u64, Instant)>,
    started_at: u64,
}

impl Bar {
    pub fn add(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
            return;
        }
        let mut state = self.state.lock().unwrap();
        state.0 += bytes;
        let tenth = state.0 * 10 / self.total.max(1);
        if tenth > state.1 && state.0 < self.total {
            state.1 = tenth;
            let secs = state.2.elapsed().as_secs_f64().max(0.001);
            let rate = (state.0 - self.started_at) as f64 / secs;
            eprintln!(
                "{}: {}/{} ({}/s)",
                self.label,
                HumanBytes(state.0),
                HumanBytes(self.total),
                HumanBytes(rate as u64)
            );
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_template_is_valid() {
        assert!(ProgressStyle::with_template(BAR_TEMPLATE).is_ok());
    }

    #[test]
    fn plain_progress_counts_bytes() {
        let progress = Progress { multi: None };
        let bar = progress.bar("sha256:abc", 100, 30);
        bar.add(50);
        assert_eq!(bar.state.lock().unwrap().0, 80);
        assert_eq!(bar.state.lock().unwrap().1, 8);
        bar.finish();
    }
}
