//! Plots and the timeline of a run, read at a glance: SVG written by hand
//! (no plotting crate; the shapes are few), nemesis windows shaded.
//!
//! - `latency.svg`: every op's latency over time, by outcome;
//! - `throughput.svg`: successful ops per second over time;
//! - `running.svg`: per group, how many queries (or permits) were certainly
//!   running, against the group's limit;
//! - `timeline.html`: every op as a bar in its process's row.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use crate::history::{pairs, Op, OpType, Process};
use crate::nemesis::Window;

const W: f64 = 960.0;
const H: f64 = 300.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 40.0;
/// Fault windows.
const FAULT: &str = "#f4c7c3";

/// A shaded time span of a chart (a fault), with its tooltip.
#[derive(Debug, Clone)]
pub struct Shade {
    pub start_ns: u64,
    pub end_ns: u64,
    pub label: String,
}

impl From<&Window> for Shade {
    fn from(w: &Window) -> Shade {
        Shade {
            start_ns: w.start_ns,
            end_ns: w.end_ns,
            label: format!("{:?} {}", w.fault, w.targets.join(",")),
        }
    }
}

/// A chart with linear axes: x in seconds, y in the chart's unit.
struct Chart {
    svg: String,
    x_max: f64,
    y_max: f64,
}

impl Chart {
    fn new(title: &str, y_label: &str, x_max: f64, y_max: f64, shades: &[Shade]) -> Chart {
        let x_max = x_max.max(1e-9);
        let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
        let mut c = Chart {
            svg: String::new(),
            x_max,
            y_max,
        };
        let _ = write!(
            c.svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11"><rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="18" font-size="13">{}</text>"#,
            escape(title)
        );
        for w in shades {
            let (x0, x1) = (c.x(w.start_ns as f64 / 1e9), c.x(w.end_ns as f64 / 1e9));
            let _ = write!(
                c.svg,
                r#"<rect x="{x0:.1}" y="{TOP}" width="{:.1}" height="{:.1}" fill="{FAULT}" opacity="0.6"><title>{}</title></rect>"#,
                (x1 - x0).max(1.0),
                H - TOP - BOTTOM,
                escape(&w.label)
            );
        }
        // Axes, with five ticks each.
        let _ = write!(
            c.svg,
            r#"<line x1="{LEFT}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{}" stroke="black"/>"#,
            H - BOTTOM,
            W - RIGHT,
            H - BOTTOM,
            H - BOTTOM
        );
        for i in 0..=5 {
            let (xv, yv) = (x_max * i as f64 / 5.0, c.y_max * i as f64 / 5.0);
            let _ = write!(
                c.svg,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{xv:.1}</text><text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
                c.x(xv),
                H - BOTTOM + 15.0,
                LEFT - 5.0,
                c.y(yv) + 4.0,
                short(yv)
            );
        }
        let _ = write!(
            c.svg,
            r#"<text x="{}" y="{}" text-anchor="middle">time (s); shaded: faults</text><text x="14" y="{}" transform="rotate(-90 14 {})" text-anchor="middle">{}</text>"#,
            (LEFT + W - RIGHT) / 2.0,
            H - 5.0,
            H / 2.0,
            H / 2.0,
            escape(y_label)
        );
        c
    }

    fn x(&self, v: f64) -> f64 {
        LEFT + v / self.x_max * (W - LEFT - RIGHT)
    }

    fn y(&self, v: f64) -> f64 {
        H - BOTTOM - v.min(self.y_max) / self.y_max * (H - TOP - BOTTOM)
    }

    fn dot(&mut self, x: f64, y: f64, color: &str) {
        let _ = write!(
            self.svg,
            r#"<circle cx="{:.1}" cy="{:.1}" r="1.6" fill="{color}"/>"#,
            self.x(x),
            self.y(y)
        );
    }

    /// A step line through `(x, y)` points.
    fn steps(&mut self, points: &[(f64, f64)], color: &str, dashed: bool) {
        if points.is_empty() {
            return;
        }
        let mut d = format!("M{:.1},{:.1}", self.x(points[0].0), self.y(points[0].1));
        for w in points.windows(2) {
            let _ = write!(d, " H{:.1} V{:.1}", self.x(w[1].0), self.y(w[1].1));
        }
        let dash = if dashed {
            r#" stroke-dasharray="6,4""#
        } else {
            ""
        };
        let _ = write!(
            self.svg,
            r#"<path d="{d}" fill="none" stroke="{color}" stroke-width="1.5"{dash}/>"#
        );
    }

    fn legend(&mut self, items: &[(&str, &str)]) {
        for (i, (label, color)) in items.iter().enumerate() {
            let x = W - RIGHT - 160.0;
            let y = TOP + 12.0 + i as f64 * 14.0;
            let _ = write!(
                self.svg,
                r#"<rect x="{x}" y="{}" width="10" height="10" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
                y - 9.0,
                x + 14.0,
                y,
                escape(label)
            );
        }
    }

    fn finish(mut self) -> String {
        self.svg.push_str("</svg>\n");
        self.svg
    }
}

/// Every completed op's latency over time, by outcome, faults shaded.
pub fn latency_svg(ops: &[Op], shades: &[Shade], end_ns: u64, title: &str) -> String {
    let secs = end_ns as f64 / 1e9;
    let ps = pairs(ops);
    let lat: Vec<(f64, f64, OpType)> = ps
        .iter()
        .filter_map(|p| {
            let c = p.complete?;
            Some((
                p.invoke.time_ns as f64 / 1e9,
                (c.time_ns - p.invoke.time_ns) as f64 / 1e6,
                c.kind,
            ))
        })
        .collect();
    let y_max = percentile(lat.iter().map(|l| l.1).collect(), 0.999);
    let mut c = Chart::new(title, "latency (ms)", secs, y_max, shades);
    for (x, y, kind) in &lat {
        let color = match kind {
            OpType::Ok => "#2ca02c",
            OpType::Fail => "#d62728",
            _ => "#ff7f0e",
        };
        c.dot(*x, *y, color);
    }
    c.legend(&[
        ("ok", "#2ca02c"),
        ("fail", "#d62728"),
        ("info (unknown)", "#ff7f0e"),
    ]);
    c.finish()
}

fn short(v: f64) -> String {
    if v >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const COLORS: [&str; 6] = [
    "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#7f7f7f",
];

/// Writes the plots and the timeline into `dir`.
pub fn write(
    dir: &Path,
    ops: &[Op],
    windows: &[Window],
    limits: &BTreeMap<String, u64>,
    end_ns: u64,
) -> Result<()> {
    let secs = end_ns as f64 / 1e9;

    let shades: Vec<Shade> = windows.iter().map(Shade::from).collect();
    save(
        dir,
        "latency.svg",
        latency_svg(ops, &shades, end_ns, "Latency of every operation"),
    )?;

    // Successful completions per second.
    let buckets = secs.ceil().max(1.0) as usize;
    let mut per_sec = vec![0f64; buckets];
    for o in ops
        .iter()
        .filter(|o| o.kind == OpType::Ok && o.process != crate::history::NEMESIS)
    {
        let i = ((o.time_ns as f64 / 1e9) as usize).min(buckets - 1);
        per_sec[i] += 1.0;
    }
    let peak = per_sec.iter().cloned().fold(0.0, f64::max);
    let mut c = Chart::new(
        "Successful operations per second",
        "ok ops/s",
        secs,
        peak,
        &shades,
    );
    let pts: Vec<(f64, f64)> = per_sec
        .iter()
        .enumerate()
        .map(|(i, n)| (i as f64, *n))
        .collect();
    c.steps(&pts, "#1f77b4", false);
    save(dir, "throughput.svg", c.finish())?;

    // Certainly running, per group, against its limit.
    let intervals = running(ops);
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for (group, events) in &intervals {
        let mut count = 0.0;
        let mut pts = vec![(0.0, 0.0)];
        for (t, d) in events {
            count += *d as f64;
            pts.push((*t as f64 / 1e9, count));
        }
        pts.push((secs, count));
        series.insert(group.clone(), pts);
    }
    let peak = series
        .values()
        .flatten()
        .map(|p| p.1)
        .chain(limits.values().map(|l| *l as f64))
        .fold(0.0, f64::max);
    let mut c = Chart::new(
        "Certainly running per group (solid) and its limit (dashed)",
        "running",
        secs,
        peak,
        &shades,
    );
    let mut legend = Vec::new();
    for (i, (group, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        c.steps(pts, color, false);
        if let Some(l) = limits.get(group) {
            c.steps(&[(0.0, *l as f64), (secs, *l as f64)], color, true);
        }
        legend.push((group.as_str(), color));
    }
    c.legend(&legend);
    save(dir, "running.svg", c.finish())?;

    save(dir, "timeline.html", timeline(ops, windows, end_ns))
}

fn save(dir: &Path, name: &str, text: String) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    if v.is_empty() {
        return 1.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p) as usize]
}

/// Per group (and its ancestors), +1/-1 events of certainly-running
/// intervals: the queries' running intervals, or held permits.
fn running(ops: &[Op]) -> BTreeMap<String, Vec<(u64, i64)>> {
    let mut events: BTreeMap<String, Vec<(u64, i64)>> = BTreeMap::new();
    let mut add = |group: &str, from: u64, until: u64| {
        if until <= from {
            return;
        }
        let mut prefix = String::new();
        for part in group.split('.') {
            if !prefix.is_empty() {
                prefix.push('.');
            }
            prefix.push_str(part);
            let e = events.entry(prefix.clone()).or_default();
            e.push((from, 1));
            e.push((until, -1));
        }
    };
    let mut granted: BTreeMap<&str, (&str, u64)> = BTreeMap::new();
    for p in pairs(ops) {
        let Some(c) = p.complete else { continue };
        match p.invoke.f.as_str() {
            "query" => {
                if let (Some(g), Some(a), Some(b)) = (
                    c.value["group"].as_str(),
                    c.value["running_from_ns"].as_u64(),
                    c.value["running_until_ns"].as_u64(),
                ) {
                    add(g, a, b);
                }
            }
            "acquire" if c.kind == OpType::Ok && c.value["status"] == "admitted" => {
                if let (Some(q), Some(g)) =
                    (c.value["query_id"].as_str(), c.value["group"].as_str())
                {
                    granted.insert(q, (g, c.time_ns));
                }
            }
            "release" => {
                if let Some((g, from)) = p.invoke.value["query_id"]
                    .as_str()
                    .and_then(|q| granted.remove(q))
                {
                    add(g, from, p.invoke.time_ns);
                }
            }
            _ => {}
        }
    }
    for e in events.values_mut() {
        e.sort();
    }
    events
}

/// Every op as a bar from invocation to completion, one row per process.
fn timeline(ops: &[Op], windows: &[Window], end_ns: u64) -> String {
    let ps = pairs(ops);
    let mut rows: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let scale = 2000.0 / (end_ns.max(1) as f64);
    for p in &ps {
        let Process::Client(proc_no) = p.invoke.process else {
            continue;
        };
        let (end, kind, value) = match p.complete {
            Some(c) => (c.time_ns, c.kind, &c.value),
            None => (end_ns, OpType::Info, &p.invoke.value),
        };
        let color = match kind {
            OpType::Ok => "#b7e4b7",
            OpType::Fail => "#f2b8b8",
            _ => "#ffd8a8",
        };
        let left = p.invoke.time_ns as f64 * scale;
        let width = ((end - p.invoke.time_ns) as f64 * scale).max(2.0);
        rows.entry(proc_no).or_default().push(format!(
            r#"<div class="op" style="left:{left:.1}px;width:{width:.1}px;background:{color}" title="{} {:?} {:.3}s-{:.3}s {}"></div>"#,
            escape(&p.invoke.f),
            kind,
            p.invoke.time_ns as f64 / 1e9,
            end as f64 / 1e9,
            escape(&value.to_string())
        ));
    }
    let mut html = String::from(
        r#"<!doctype html><meta charset="utf-8"><title>timeline</title>
<style>body{font-family:sans-serif;font-size:12px} .row{position:relative;height:16px;border-bottom:1px solid #eee;width:2000px}
.op{position:absolute;top:2px;height:12px;border:1px solid #888;box-sizing:border-box}
.fault{position:absolute;top:0;bottom:0;background:#f4c7c3;opacity:.5}
.label{position:absolute;left:-70px;width:65px;text-align:right}</style>
<p>Each row is a client process; each bar an operation from invocation to completion (green ok, red fail, orange unknown). Shaded: faults. Hover for details.</p>
<div style="margin-left:80px;position:relative">"#,
    );
    for w in windows {
        let _ = write!(
            html,
            r#"<div class="fault" style="left:{:.1}px;width:{:.1}px" title="{:?} {}"></div>"#,
            w.start_ns as f64 * scale,
            ((w.end_ns - w.start_ns) as f64 * scale).max(2.0),
            w.fault,
            escape(&w.targets.join(","))
        );
    }
    for (p, bars) in rows {
        let _ = write!(
            html,
            r#"<div class="row"><span class="label">{p}</span>{}</div>"#,
            bars.concat()
        );
    }
    html.push_str("</div>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Recorder;
    use serde_json::json;

    #[test]
    fn writes_every_plot_and_the_timeline() {
        let dir = tempfile::tempdir().unwrap();
        let h = Recorder::new(None).unwrap();
        h.record(Process::Client(0), OpType::Invoke, "query", json!({}), None);
        h.record(
            Process::Client(0),
            OpType::Ok,
            "query",
            json!({"group": "q.a", "running_from_ns": 10, "running_until_ns": 1_000_000}),
            None,
        );
        let limits = BTreeMap::from([("q".to_string(), 4), ("q.a".to_string(), 2)]);
        write(dir.path(), &h.ops(), &[], &limits, 2_000_000).unwrap();
        for f in [
            "latency.svg",
            "throughput.svg",
            "running.svg",
            "timeline.html",
        ] {
            let text = std::fs::read_to_string(dir.path().join(f)).unwrap();
            assert!(text.len() > 200, "{f}: {text}");
        }
        let running = std::fs::read_to_string(dir.path().join("running.svg")).unwrap();
        assert!(
            running.contains("stroke-dasharray"),
            "the limit line is drawn"
        );
    }
}
