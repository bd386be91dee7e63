//! Latency summaries: nearest-rank percentiles over all samples (no
//! histogram bucketing, so small runs are exact).

use std::time::Duration;

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// Nearest-rank percentile `p` (0..=100) of sorted samples.
fn rank(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[idx.clamp(1, sorted.len()) - 1]
}

pub fn summarize(samples: &[Duration]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let total: Duration = sorted.iter().sum();
    Some(Summary {
        count: sorted.len(),
        p50_ms: ms(rank(&sorted, 50.0)),
        p99_ms: ms(rank(&sorted, 99.0)),
        max_ms: ms(sorted[sorted.len() - 1]),
        mean_ms: ms(total) / sorted.len() as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let s = summarize(&samples).unwrap();
        assert_eq!(
            (s.count, s.p50_ms, s.p99_ms, s.max_ms, s.mean_ms),
            (100, 50.0, 99.0, 100.0, 50.5)
        );
        let one = summarize(&[Duration::from_millis(7)]).unwrap();
        assert_eq!((one.p50_ms, one.p99_ms), (7.0, 7.0));
        assert!(summarize(&[]).is_none());
    }
}
