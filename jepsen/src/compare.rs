//! `jepsen compare`: the same workload, seed and nemesis schedule in
//! linearizable mode and in eventual mode at each staleness bound, one
//! table, and one page to look at: `index.html` in the comparison's
//! directory, with the table, each mode's chart of queries certainly
//! running per group against its limit (fault windows shaded: an
//! over-admission is a line above its dashed limit), and links to each
//! mode's run.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::report::escape;
use crate::test::{Summary, TestSpec};

/// Runs each spec in turn, each into its own directory under `root`.
pub async fn run(specs: &[TestSpec], root: &Path) -> Result<Vec<Summary>> {
    let mut summaries = Vec::new();
    for spec in specs {
        let dir = root.join(mode_dir(&spec.mode.label()));
        summaries.push(
            crate::test::run(spec, &dir)
                .await
                .with_context(|| format!("the {} run", spec.mode.label()))?,
        );
    }
    Ok(summaries)
}

/// A mode's directory name: `eventual:100` -> `eventual-100`.
pub fn mode_dir(label: &str) -> String {
    label.replace(':', "-")
}

const HEADERS: [&str; 11] = [
    "mode",
    "bound",
    "over-admission violations",
    "max excess",
    "excess-seconds",
    "admission p50",
    "admission p99",
    "ok ops/s",
    "seconds unavailable",
    "longest stall",
    "valid",
];

/// One row of the table, as text cells in [`HEADERS`]' order.
fn cells(r: &Summary) -> [String; 11] {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} ms"));
    [
        // The mode without its bound (`eventual:100` -> `eventual`).
        r.mode.split(':').next().unwrap_or_default().to_string(),
        r.bound_ms.map_or("-".to_string(), |b| format!("{b} ms")),
        r.violations.to_string(),
        r.max_excess.to_string(),
        format!("{:.2}", r.excess_seconds),
        ms(r.admission_p50_ms),
        ms(r.admission_p99_ms),
        format!("{:.1}", r.ok_per_second),
        format!("{:.1}", r.seconds_unavailable),
        r.longest_stall_seconds
            .map_or("-".to_string(), |s| format!("{s:.1} s")),
        serde_json::to_string(&r.valid).unwrap_or_default(),
    ]
}

/// The comparison table, as Markdown.
pub fn table_markdown(rows: &[Summary]) -> String {
    let mut out = format!(
        "| {} |\n|{}\n",
        HEADERS.join(" | "),
        "---|".repeat(HEADERS.len())
    );
    for r in rows {
        let _ = writeln!(out, "| {} |", cells(r).join(" | "));
    }
    out
}

/// The comparison's page: `about` (what ran), the table, one chart per
/// mode, links to each run.
pub fn index_html(root: &Path, about: &str, rows: &[Summary]) -> String {
    let mut html = String::from(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>jepsen compare</title>
<style>
body{font-family:sans-serif;margin:24px;max-width:1000px;color:#222}
table{border-collapse:collapse;margin:12px 0}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
td.invalid{background:#f8d0cc} td.valid{background:#d6efd6}
.note{color:#555;font-size:13px} figure{margin:16px 0}
</style></head><body>
<h1>Linearizable and eventual admission under the same faults</h1>
"#,
    );
    let _ = writeln!(html, r#"<p class="note">{}</p>"#, escape(about));
    html.push_str(r#"<table id="summary"><thead><tr>"#);
    for h in HEADERS {
        let _ = write!(html, "<th>{}</th>", escape(h));
    }
    html.push_str("</tr></thead><tbody>\n");
    for r in rows {
        html.push_str("<tr>");
        let c = cells(r);
        let last = c.len() - 1;
        for (i, cell) in c.iter().enumerate() {
            let class = match (i == last, cell.as_str()) {
                (true, "true") => r#" class="valid""#,
                (true, "false") => r#" class="invalid""#,
                _ => "",
            };
            let _ = write!(html, "<td{class}>{}</td>", escape(cell));
        }
        html.push_str("</tr>\n");
    }
    html.push_str(
        r#"</tbody></table>
<p class="note">Over-admission: more queries certainly running in a group than its limit, as the clients saw them (a query counts from the first poll that saw it running to the last). Excess-seconds: the excess integrated over time. Unavailable: seconds in which no operation succeeded.</p>
"#,
    );
    for r in rows {
        let dir = mode_dir(&r.mode);
        let _ = writeln!(
            html,
            r#"<h2 id="{0}">{1}</h2>"#,
            escape(&dir),
            escape(&r.mode)
        );
        for s in &r.skipped {
            let _ = writeln!(
                html,
                r#"<p class="note">skipped {}: {}</p>"#,
                escape(&s.feature),
                escape(&s.why)
            );
        }
        let svg = std::fs::read_to_string(root.join(&dir).join("running.svg"));
        match svg {
            Ok(svg) => {
                let _ = writeln!(
                    html,
                    "<figure>{svg}<figcaption class=\"note\">Queries certainly running per group (solid) against the group's limit (dashed); shaded: fault windows. A solid line above its dashed line is over-admission.</figcaption></figure>"
                );
            }
            Err(e) => {
                let _ = writeln!(
                    html,
                    r#"<p class="note">no chart: {}</p>"#,
                    escape(&e.to_string())
                );
            }
        }
        html.push_str("<p>");
        for (file, what) in [
            ("timeline.html", "timeline"),
            ("latency.svg", "latency"),
            ("throughput.svg", "throughput"),
            ("analysis.md", "analysis"),
            ("results.json", "results"),
            ("history.jsonl", "history"),
            ("jepsen.log", "log"),
        ] {
            let _ = write!(html, r#"<a href="{}/{file}">{what}</a> "#, escape(&dir));
        }
        html.push_str("</p>\n");
    }
    html.push_str("</body></html>\n");
    html
}

/// Writes `compare.md` and `index.html` into `root`; answers the page's path.
pub fn write_report(root: &Path, about: &str, rows: &[Summary]) -> Result<PathBuf> {
    let md = root.join("compare.md");
    std::fs::write(&md, table_markdown(rows))
        .with_context(|| format!("writing {}", md.display()))?;
    let index = root.join("index.html");
    std::fs::write(&index, index_html(root, about, rows))
        .with_context(|| format!("writing {}", index.display()))?;
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::Validity;
    use crate::test::Skipped;

    fn row(mode: &str, bound: Option<u64>, violations: u64, valid: Validity) -> Summary {
        Summary {
            mode: mode.into(),
            bound_ms: bound,
            valid,
            violations,
            max_excess: violations.min(1),
            excess_seconds: 0.5 * violations as f64,
            admission_p50_ms: Some(3.3),
            admission_p99_ms: None,
            ok_per_second: 12.0,
            seconds_unavailable: 1.0,
            longest_stall_seconds: Some(0.0),
            dir: PathBuf::from(mode_dir(mode)),
            skipped: vec![Skipped {
                feature: "clock faults".into(),
                why: "no <libfaketime>".into(),
            }],
        }
    }

    #[test]
    fn the_page_holds_the_table_each_chart_and_links_to_each_run() {
        let root = tempfile::tempdir().unwrap();
        let rows = [
            row("linearizable", None, 0, Validity::Valid),
            row("eventual:100", Some(100), 3, Validity::Invalid),
        ];
        std::fs::create_dir_all(root.path().join("linearizable")).unwrap();
        std::fs::write(
            root.path().join("linearizable/running.svg"),
            "<svg xmlns=\"http://www.w3.org/2000/svg\"><path d=\"M0,0\"/></svg>",
        )
        .unwrap();
        let index = write_report(root.path(), "queries, seed 7", &rows).unwrap();
        let html = std::fs::read_to_string(index).unwrap();
        assert_eq!(html.matches("<tr>").count(), 3, "a header and two rows");
        assert!(html.contains("<td>eventual</td><td>100 ms</td><td>3</td>"));
        assert!(html.contains(r#"<td class="valid">true</td>"#));
        assert!(html.contains(r#"<td class="invalid">false</td>"#));
        assert!(html.contains("<path d=\"M0,0\"/>"), "the chart is inline");
        assert!(
            html.contains("no chart:"),
            "eventual-100 has no running.svg"
        );
        assert!(html.contains(r#"href="eventual-100/timeline.html""#));
        assert!(html.contains("no &lt;libfaketime&gt;"), "escaped");
        let md = std::fs::read_to_string(root.path().join("compare.md")).unwrap();
        assert!(
            md.contains(
                "| eventual | 100 ms | 3 | 1 | 1.50 | 3.3 ms | - | 12.0 | 1.0 | 0.0 s | false |"
            ),
            "{md}"
        );
    }
}
