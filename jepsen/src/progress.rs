//! What a `test` or `compare` run shows on the terminal while it runs: one
//! line per phase, and during the workload a progress bar redrawn in place
//! when stdout is a terminal. In a file or a pipe the bar is left out and
//! no escape code or carriage return is written: plain lines only.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// The phases of one run, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Tools and privileges found, faults kept or skipped.
    Probe,
    /// The cluster is up.
    Start,
    /// The workload ran under the nemesis.
    Run,
    /// Faults healed, admissions drained.
    Quiesce,
    /// The checkers' verdict.
    Check,
    /// Plots and files written.
    Report,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Probe => "probe",
            Phase::Start => "start",
            Phase::Run => "run",
            Phase::Quiesce => "quiesce",
            Phase::Check => "check",
            Phase::Report => "report",
        }
    }
}

/// Prints one run's progress, labelled with its mode.
pub struct Progress {
    label: String,
    tty: bool,
    since: Instant,
    /// A bar is on screen and must be cleared before the next line.
    bar_shown: std::sync::atomic::AtomicBool,
}

impl Progress {
    pub fn new(label: &str) -> Progress {
        Progress {
            label: label.to_string(),
            tty: std::io::stdout().is_terminal(),
            since: Instant::now(),
            bar_shown: Default::default(),
        }
    }

    /// One line: the phase ended (or a note within it).
    pub fn phase(&self, phase: Phase, detail: &str) {
        let line = phase_line(&self.label, phase, self.since.elapsed(), detail);
        let mut out = std::io::stdout().lock();
        if self
            .bar_shown
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            let _ = write!(out, "\r\x1b[2K");
        }
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    /// The workload's bar; nothing unless stdout is a terminal.
    pub fn bar(&self, elapsed: Duration, total: Duration, faults: u64, ops: u64) {
        if !self.tty {
            return;
        }
        let text = bar_text(&self.label, elapsed, total, faults, ops);
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "\r\x1b[2K{text}");
        let _ = out.flush();
        self.bar_shown
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// `linearizable     run       31.2 s  30/30 s, 7 faults, 1234 ops`.
pub fn phase_line(label: &str, phase: Phase, since_start: Duration, detail: &str) -> String {
    format!(
        "{label:<16} {:<8} {:>6.1} s  {detail}",
        phase.name(),
        since_start.as_secs_f64()
    )
}

/// `linearizable     run      [#######.............]  12/30 s, 4 faults, 456 ops`.
pub fn bar_text(label: &str, elapsed: Duration, total: Duration, faults: u64, ops: u64) -> String {
    const WIDTH: usize = 20;
    let total_s = total.as_secs_f64().max(1e-9);
    let done = ((elapsed.as_secs_f64() / total_s).min(1.0) * WIDTH as f64) as usize;
    format!(
        "{label:<16} {:<8} [{}{}] {:>3}/{} s, {}",
        Phase::Run.name(),
        "#".repeat(done),
        ".".repeat(WIDTH - done),
        elapsed.as_secs().min(total.as_secs()),
        total.as_secs(),
        counts(faults, ops),
    )
}

/// `1 fault, 25 ops`.
pub fn counts(faults: u64, ops: u64) -> String {
    let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    format!(
        "{}, {}",
        plural(faults, "fault", "faults"),
        plural(ops, "op", "ops")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_mode_phase_time_and_counts_without_escape_codes() {
        let l = phase_line(
            "eventual:100",
            Phase::Run,
            Duration::from_millis(31_250),
            "30/30 s, 7 faults, 1234 ops",
        );
        assert!(l.starts_with("eventual:100"), "{l}");
        assert!(
            l.contains(" run ") && l.contains("31.2 s") && l.contains("7 faults"),
            "{l}"
        );
        assert!(!l.contains('\x1b') && !l.contains('\r'), "{l:?}");
        let b = bar_text(
            "linearizable",
            Duration::from_secs(15),
            Duration::from_secs(30),
            3,
            99,
        );
        assert!(b.contains("[##########..........]"), "{b}");
        assert!(b.contains("15/30 s, 3 faults, 99 ops"), "{b}");
        assert_eq!(counts(1, 1), "1 fault, 1 op");
    }
}
