//! CPU time and resident memory of a process, from `/proc` (Linux): what
//! a worker reports of its query processes, and what the benchmarks charge
//! to the processes they measure.

use std::time::Instant;

/// utime + stime of a process, in clock ticks: this process for `None`.
/// `None` where `/proc` cannot tell (not Linux, or the process is gone).
pub fn cpu_ticks(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    parse_stat_ticks(&std::fs::read_to_string(path).ok()?)
}

/// utime + stime from the text of a `/proc/<pid>/stat`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may itself hold
    // spaces and ')': the other fields start after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace();
    // Fields 14 and 15 of the line are utime and stime; `rest` starts at
    // field 3 (the state).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` (resident now) and `VmHWM` (the most resident at once) of
/// process `pid`, in KiB, from `/proc/<pid>/status`.
pub fn resident_kb(pid: u32) -> Option<(u64, u64)> {
    parse_resident_kb(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

fn parse_resident_kb(status: &str) -> Option<(u64, u64)> {
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line[name.len()..].split_whitespace().next()?.parse().ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant; no memory is touched.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// A process's CPU use between readings, in cores (1.0: one core busy).
pub struct CpuMeter {
    pid: Option<u32>,
    last_ticks: Option<u64>,
    last_at: Instant,
}

impl CpuMeter {
    /// Starts measuring process `pid` (this process for `None`) now.
    pub fn new(pid: Option<u32>) -> Self {
        Self {
            pid,
            last_ticks: cpu_ticks(pid),
            last_at: Instant::now(),
        }
    }

    /// Cores used since the last reading (or since [`CpuMeter::new`]); 0
    /// where `/proc` cannot tell.
    pub fn cores_since_last(&mut self) -> f64 {
        let now = Instant::now();
        let ticks = cpu_ticks(self.pid);
        let cores = match (self.last_ticks, ticks) {
            (Some(a), Some(b)) if b >= a => {
                let secs = now.duration_since(self.last_at).as_secs_f64().max(1e-3);
                (b - a) as f64 / ticks_per_second() / secs
            }
            _ => 0.0,
        };
        self.last_ticks = ticks;
        self.last_at = now;
        cores
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utime_and_stime_after_an_awkward_name() {
        // A real line's shape; the name holds a space and a ')'.
        let line = "4242 (raft rm) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    150 27 0 0 20 0 9 0 123456 1000000 2000 18446744073709551615";
        assert_eq!(parse_stat_ticks(line), Some(177));
        assert_eq!(parse_stat_ticks("4242 (short) S 1 2"), None);
        assert_eq!(parse_stat_ticks("no parenthesis"), None);
    }

    #[test]
    fn reads_this_process_cpu_time() {
        let before = cpu_ticks(None).expect("/proc/self/stat");
        let mut x = 0u64;
        for i in 0..30_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_ticks(None).unwrap() >= before);
        assert!(cpu_ticks(Some(std::process::id())).is_some());
    }

    #[test]
    fn reads_resident_memory() {
        let status = "Name:\traft-rm\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n";
        assert_eq!(parse_resident_kb(status), Some((102400, 204800)));
        assert_eq!(parse_resident_kb("Name: x\n"), None);
        let (rss, peak) = resident_kb(std::process::id()).unwrap();
        assert!(rss > 0 && peak >= rss);
    }
}
