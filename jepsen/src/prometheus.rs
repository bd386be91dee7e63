//! Reading a process's `GET /metrics` (Prometheus text format): a
//! counter's or gauge's value, one histogram's buckets, the difference
//! between two scrapes, and quantiles estimated from the buckets.
//!
//! A quantile from buckets is a bound, not a sample: "p99 <= 50 µs" means
//! that at least 99% of the observations fell in buckets up to 50 µs.

use serde::Serialize;

/// A Prometheus histogram: cumulative counts per upper bound.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Histogram {
    /// (upper bound `le`, observations at or below it), ascending; the
    /// last bound is `+Inf` and holds every observation.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum: f64,
}

/// A sample's labels, in the order written.
type Labels = Vec<(String, String)>;

/// One sample line: metric name, labels, value.
fn parse_line(line: &str) -> Option<(&str, Labels, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let (labels, rest) = parse_labels(&line[open + 1..])?;
            (&line[..open], labels, rest)
        }
        None => {
            let (name, rest) = line.split_once(' ')?;
            (name, Vec::new(), rest)
        }
    };
    // The value, then an optional timestamp.
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some((name, labels, value))
}

/// `k="v",...}` -> the labels and what follows the `}`.
fn parse_labels(mut text: &str) -> Option<(Labels, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start_matches([',', ' ']);
        if let Some(rest) = text.strip_prefix('}') {
            return Some((labels, rest));
        }
        let (key, rest) = text.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.trim().to_string(), value));
        text = &rest[end + 1..];
    }
}

/// Whether a series' `labels` include all of `matching`.
fn selected(labels: &[(String, String)], matching: &[(&str, &str)]) -> bool {
    matching
        .iter()
        .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
}

/// The histogram `name`, summed over every series whose labels include
/// all of `matching` (so `&[]` sums all series). `None` if no series
/// matches.
pub fn histogram(text: &str, name: &str, matching: &[(&str, &str)]) -> Option<Histogram> {
    let (bucket, count, sum) = (
        format!("{name}_bucket"),
        format!("{name}_count"),
        format!("{name}_sum"),
    );
    let mut h = Histogram::default();
    let mut found = false;
    for (metric, labels, value) in text.lines().filter_map(parse_line) {
        if !selected(&labels, matching) {
            continue;
        }
        if metric == bucket {
            let Some(le) = labels.iter().find(|(k, _)| k == "le") else {
                continue;
            };
            let le = match le.1.as_str() {
                "+Inf" => f64::INFINITY,
                v => match v.parse() {
                    Ok(v) => v,
                    Err(_) => continue,
                },
            };
            found = true;
            match h.buckets.iter_mut().find(|(b, _)| *b == le) {
                Some(b) => b.1 += value as u64,
                None => h.buckets.push((le, value as u64)),
            }
        } else if metric == count {
            h.count += value as u64;
        } else if metric == sum {
            h.sum += value;
        }
    }
    h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    found.then_some(h)
}

/// The counter or gauge `name`, summed over every series whose labels
/// include all of `matching` (`&[]`: all series, or the one unlabelled
/// series). `None` if no series matches.
pub fn value(text: &str, name: &str, matching: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter_map(parse_line)
        .filter(|(metric, labels, _)| *metric == name && selected(labels, matching))
        .map(|(_, _, v)| v)
        .reduce(|a, b| a + b)
}

impl Histogram {
    /// What was observed after `before` was scraped (same buckets).
    pub fn since(&self, before: &Histogram) -> Histogram {
        let earlier = |le: f64| {
            before
                .buckets
                .iter()
                .find(|(b, _)| *b == le)
                .map_or(0, |(_, n)| *n)
        };
        Histogram {
            buckets: self
                .buckets
                .iter()
                .map(|(le, n)| (*le, n.saturating_sub(earlier(*le))))
                .collect(),
            count: self.count.saturating_sub(before.count),
            sum: (self.sum - before.sum).max(0.0),
        }
    }

    /// Upper bound of the bucket that holds the `q`-quantile (0 < q <= 1,
    /// nearest rank): at least a fraction `q` of the observations are at
    /// or below it. `None` without observations; `+Inf` if it lies past
    /// the last finite bound.
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        self.buckets
            .iter()
            .find(|(_, n)| *n >= rank)
            .map(|(le, _)| *le)
            .or(Some(f64::INFINITY))
    }

    /// The exact mean (from `_sum` and `_count`).
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP x_seconds Decisions.
# TYPE x_seconds histogram
x_seconds_sum{path="fresh",outcome="admitted"} 0.0009
x_seconds_count{path="fresh",outcome="admitted"} 100
x_seconds_bucket{le="1e-5",path="fresh",outcome="admitted"} 90
x_seconds_bucket{le="5e-5",path="fresh",outcome="admitted"} 99
x_seconds_bucket{le="+Inf",path="fresh",outcome="admitted"} 100
x_seconds_sum{path="fetch",outcome="admitted"} 0.5
x_seconds_count{path="fetch",outcome="admitted"} 5
x_seconds_bucket{le="1e-5",path="fetch",outcome="admitted"} 0
x_seconds_bucket{le="5e-5",path="fetch",outcome="admitted"} 0
x_seconds_bucket{le="+Inf",path="fetch",outcome="admitted"} 5
other{a="with \"quotes\", and, commas"} 7
"#;

    #[test]
    fn reads_one_series_or_sums_them() {
        let fresh = histogram(TEXT, "x_seconds", &[("path", "fresh")]).unwrap();
        assert_eq!(
            fresh.buckets,
            vec![(1e-5, 90), (5e-5, 99), (f64::INFINITY, 100)]
        );
        assert_eq!((fresh.count, fresh.sum), (100, 0.0009));
        let all = histogram(TEXT, "x_seconds", &[]).unwrap();
        assert_eq!(
            (all.count, all.buckets[2], all.buckets[0]),
            (105, (f64::INFINITY, 105), (1e-5, 90))
        );
        assert!(histogram(TEXT, "x_seconds", &[("path", "none")]).is_none());
        assert!(histogram(TEXT, "missing", &[]).is_none());
        let (_, labels, v) = parse_line(TEXT.lines().last().unwrap()).unwrap();
        assert_eq!(
            (labels[0].1.as_str(), v),
            ("with \"quotes\", and, commas", 7.0)
        );
    }

    #[test]
    fn reads_a_counter_or_gauge() {
        assert_eq!(value(TEXT, "other", &[]), Some(7.0));
        assert_eq!(value(TEXT, "x_seconds_count", &[]), Some(105.0));
        assert_eq!(
            value(TEXT, "x_seconds_count", &[("path", "fetch")]),
            Some(5.0)
        );
        assert_eq!(value(TEXT, "x_seconds", &[]), None);
        assert_eq!(
            value(
                "raft_rm_snapshot_bytes 1234\n",
                "raft_rm_snapshot_bytes",
                &[]
            ),
            Some(1234.0)
        );
    }

    #[test]
    fn quantiles_are_bucket_bounds_by_nearest_rank() {
        let h = histogram(TEXT, "x_seconds", &[("path", "fresh")]).unwrap();
        assert_eq!(h.quantile_bound(0.5), Some(1e-5));
        assert_eq!(h.quantile_bound(0.9), Some(1e-5));
        assert_eq!(h.quantile_bound(0.91), Some(5e-5));
        assert_eq!(h.quantile_bound(0.99), Some(5e-5));
        assert_eq!(h.quantile_bound(1.0), Some(f64::INFINITY));
        assert_eq!(Histogram::default().quantile_bound(0.5), None);
        assert!((h.mean().unwrap() - 9e-6).abs() < 1e-12);
    }

    #[test]
    fn the_difference_of_two_scrapes_is_what_happened_between() {
        let before = histogram(TEXT, "x_seconds", &[("path", "fresh")]).unwrap();
        let mut after = before.clone();
        after.buckets = vec![(1e-5, 90), (5e-5, 109), (f64::INFINITY, 110)];
        after.count = 110;
        after.sum += 0.0003;
        let d = after.since(&before);
        assert_eq!(d.buckets, vec![(1e-5, 0), (5e-5, 10), (f64::INFINITY, 10)]);
        assert_eq!(d.count, 10);
        assert_eq!(d.quantile_bound(0.99), Some(5e-5));
    }
}
