//! A drill's report: the per-round table, p50/p99/max over rounds, what
//! became of every acknowledged admission, and the verdict. Written as
//! `drill.md` and `results.json`, with `admission-latency.svg` (every
//! acquire's latency over time, faults shaded), and printed.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use super::load::{Admission, Fate, Ledger};
use super::{FailoverSpec, Restart, Round};
use crate::history::Op;
use crate::report::{latency_svg, Shade};
use crate::stats::{summarize, Summary};

/// What became of a set of acknowledged admissions.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Tally {
    pub acked: usize,
    pub present: usize,
    pub lost: usize,
    /// Revoked with an expired session: by design, not a loss.
    pub revoked: usize,
    pub unverified: usize,
}

impl Tally {
    fn of<'a>(admissions: impl Iterator<Item = &'a Admission>) -> Tally {
        let mut t = Tally::default();
        for a in admissions {
            t.acked += 1;
            match a.fate {
                Fate::Present => t.present += 1,
                Fate::Lost => t.lost += 1,
                Fate::Revoked => t.revoked += 1,
                Fate::Unverified | Fate::Held => t.unverified += 1,
            }
        }
        t
    }
}

/// One round with its admissions: those held across the fault (acked
/// before it, released after it started) and those acked during it.
#[derive(Debug, Serialize)]
pub struct RoundReport {
    #[serde(flatten)]
    pub round: Round,
    pub held_across: Tally,
    pub acked_during: Tally,
    pub within_target: bool,
}

#[derive(Debug, Serialize)]
pub struct Verdict {
    pub pass: bool,
    pub reasons: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct FailoverReport {
    pub drill: &'static str,
    pub fault: &'static str,
    pub target_ms: f64,
    pub rounds: Vec<RoundReport>,
    pub detect: Option<Summary>,
    pub elect: Option<Summary>,
    pub admit: Option<Summary>,
    pub fresh: Option<Summary>,
    pub admissions: Tally,
    pub doubled: Vec<String>,
    /// Acquires that failed on every RM until the client gave up.
    pub failed_acquires: usize,
    pub stopped_early: Option<String>,
    pub healed: Vec<String>,
    pub verdict: Verdict,
}

fn summary(rounds: &[Round], f: fn(&Round) -> Option<f64>) -> Option<Summary> {
    let samples: Vec<Duration> = rounds
        .iter()
        .filter_map(f)
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .collect();
    summarize(&samples)
}

/// Loss, doubling and early stops, which fail any drill.
fn common_reasons(
    all: &Tally,
    doubled: &[String],
    stopped_early: &Option<String>,
    reasons: &mut Vec<String>,
) {
    if all.lost > 0 {
        reasons.push(format!("{} acknowledged admissions lost", all.lost));
    }
    if !doubled.is_empty() {
        reasons.push(format!("{} doubled admissions", doubled.len()));
    }
    if let Some(why) = stopped_early {
        reasons.push(format!("stopped early: {why}"));
    }
}

pub fn failover(
    spec: &FailoverSpec,
    rounds: Vec<Round>,
    ledger: &Ledger,
    stopped_early: Option<String>,
    healed: Vec<String>,
) -> FailoverReport {
    let admissions = ledger.admissions();
    let target_ms = spec.target.as_secs_f64() * 1000.0;
    let mut reasons = Vec::new();
    let reports: Vec<RoundReport> = rounds
        .iter()
        .map(|r| {
            let held_across = Tally::of(admissions.iter().filter(|a| {
                a.acked_ns < r.start_ns && a.settled_ns.unwrap_or(u64::MAX) >= r.start_ns
            }));
            let acked_during = Tally::of(
                admissions
                    .iter()
                    .filter(|a| (r.start_ns..r.end_ns).contains(&a.acked_ns)),
            );
            let within_target = r.admit_ms.is_some_and(|ms| ms <= target_ms);
            if !within_target {
                reasons.push(format!(
                    "round {}: first admission after {}",
                    r.round,
                    r.admit_ms
                        .map_or("never".to_string(), |ms| format!("{ms:.0} ms"))
                ));
            }
            RoundReport {
                round: r.clone(),
                held_across,
                acked_during,
                within_target,
            }
        })
        .collect();
    let all = Tally::of(admissions.iter());
    let doubled = ledger.doubled();
    common_reasons(&all, &doubled, &stopped_early, &mut reasons);
    FailoverReport {
        drill: "failover",
        fault: spec.fault.name(),
        target_ms,
        detect: summary(&rounds, |r| r.detect_ms),
        elect: summary(&rounds, |r| r.elect_ms),
        admit: summary(&rounds, |r| r.admit_ms),
        fresh: summary(&rounds, |r| r.fresh_ms),
        rounds: reports,
        admissions: all,
        doubled,
        failed_acquires: ledger.failed_acquires().len(),
        stopped_early,
        healed,
        verdict: Verdict {
            pass: reasons.is_empty(),
            reasons,
        },
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.0}"))
}

fn fates(t: &Tally) -> String {
    let revoked = if t.revoked > 0 {
        format!(" (+{} revoked)", t.revoked)
    } else {
        String::new()
    };
    format!(
        "{} / {} / {} / {}{revoked}",
        t.acked, t.present, t.lost, t.unverified
    )
}

/// An early stop (and what was healed), then the verdict.
fn footer(stopped_early: &Option<String>, healed: &[String], v: &Verdict) -> String {
    let mut out = String::new();
    if let Some(why) = stopped_early {
        out.push_str(&format!("\nSTOPPED EARLY ({why}); {}\n", healed.join(", ")));
    }
    out.push('\n');
    if v.pass {
        out.push_str("**Verdict: PASS**\n");
    } else {
        out.push_str(&format!("**Verdict: FAIL**: {}\n", v.reasons.join("; ")));
    }
    out
}

/// The report as Markdown (also what the terminal shows).
pub fn failover_markdown(r: &FailoverReport) -> String {
    let mut out = format!(
        "# Failover drill: {} the leader, {} rounds\n\nTimes in ms from the fault. Admissions: acked / present / lost / unverified.\n\n",
        r.fault,
        r.rounds.len()
    );
    out.push_str("| round | victim | new leader | detect | elect | admit | fresh | held across | acked during |\n|---|---|---|---|---|---|---|---|---|\n");
    for x in &r.rounds {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {}{} | {} | {} | {} |\n",
            x.round.round,
            x.round.victim,
            x.round
                .new_leader
                .map_or("-".to_string(), |l| l.to_string()),
            ms(x.round.detect_ms),
            ms(x.round.elect_ms),
            ms(x.round.admit_ms),
            if x.within_target { "" } else { " (!)" },
            ms(x.round.fresh_ms),
            fates(&x.held_across),
            fates(&x.acked_during),
        ));
    }
    out.push_str("\n| over rounds | p50 | p99 | max |\n|---|---|---|---|\n");
    for (name, s) in [
        ("detect", &r.detect),
        ("elect", &r.elect),
        ("admit", &r.admit),
        ("fresh", &r.fresh),
    ] {
        match s {
            Some(s) => out.push_str(&format!(
                "| {name} | {:.0} | {:.0} | {:.0} |\n",
                s.p50_ms, s.p99_ms, s.max_ms
            )),
            None => out.push_str(&format!("| {name} | - | - | - |\n")),
        }
    }
    out.push_str(&format!(
        "\nAll acknowledged admissions: {} acked, {} present, {} lost, {} revoked with their session, {} unverified; {} doubled; {} acquires failed on every RM beyond retries.\nTarget: first admission within {:.0} ms of the fault in every round.\n",
        r.admissions.acked,
        r.admissions.present,
        r.admissions.lost,
        r.admissions.revoked,
        r.admissions.unverified,
        r.doubled.len(),
        r.failed_acquires,
        r.target_ms
    ));
    out.push_str(&footer(&r.stopped_early, &r.healed, &r.verdict));
    out
}

#[derive(Debug, Serialize)]
pub struct RollingReport {
    pub drill: &'static str,
    pub restarts: Vec<Restart>,
    pub admissions: Tally,
    pub doubled: Vec<String>,
    pub failed_acquires: usize,
    pub stopped_early: Option<String>,
    pub healed: Vec<String>,
    pub verdict: Verdict,
}

pub fn rolling(
    restarts: Vec<Restart>,
    ledger: &Ledger,
    stopped_early: Option<String>,
    healed: Vec<String>,
) -> RollingReport {
    let admissions = Tally::of(ledger.admissions().iter());
    let doubled = ledger.doubled();
    let failed_acquires = ledger.failed_acquires().len();
    let mut reasons = Vec::new();
    if failed_acquires > 0 {
        reasons.push(format!(
            "{failed_acquires} admissions failed beyond client retries"
        ));
    }
    common_reasons(&admissions, &doubled, &stopped_early, &mut reasons);
    RollingReport {
        drill: "rolling-restart",
        restarts,
        admissions,
        doubled,
        failed_acquires,
        stopped_early,
        healed,
        verdict: Verdict {
            pass: reasons.is_empty(),
            reasons,
        },
    }
}

pub fn rolling_markdown(r: &RollingReport) -> String {
    let mut out = String::from("# Rolling restart of every RM\n\nFollowers first, the leader last after a step-down. Times in ms.\n\n| node | hand-over | out (stop to caught up) |\n|---|---|---|\n");
    for x in &r.restarts {
        out.push_str(&format!(
            "| {} | {} | {:.0} |\n",
            x.node,
            ms(x.handover_ms),
            x.out_ms
        ));
    }
    out.push_str(&format!(
        "\nAdmissions: {} acked, {} present, {} lost, {} revoked, {} unverified; {} doubled; {} failed beyond client retries.\n",
        r.admissions.acked,
        r.admissions.present,
        r.admissions.lost,
        r.admissions.revoked,
        r.admissions.unverified,
        r.doubled.len(),
        r.failed_acquires
    ));
    out.push_str(&footer(&r.stopped_early, &r.healed, &r.verdict));
    out
}

/// Writes `drill.md`, `results.json` and `admission-latency.svg` into
/// `dir`, and prints the Markdown.
pub fn write(
    dir: &Path,
    markdown: &str,
    results: &impl Serialize,
    ops: &[Op],
    shades: &[Shade],
) -> Result<()> {
    let save = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
    };
    save("drill.md", markdown.as_bytes())?;
    save("results.json", &serde_json::to_vec_pretty(results)?)?;
    let acquires: Vec<Op> = ops.iter().filter(|o| o.f == "acquire").cloned().collect();
    let end_ns = ops.last().map_or(0, |o| o.time_ns);
    let svg = latency_svg(
        &acquires,
        shades,
        end_ns,
        "Linearizable admission latency (faults shaded)",
    );
    save("admission-latency.svg", svg.as_bytes())?;
    print!("{markdown}");
    println!("report: {}", dir.join("drill.md").display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drill::load::LoadSpec;
    use crate::drill::ops::Fault;

    fn spec() -> FailoverSpec {
        FailoverSpec {
            fault: Fault::Kill,
            rounds: 1,
            pause: Duration::ZERO,
            partition: Duration::ZERO,
            interval: Duration::ZERO,
            target: Duration::from_millis(1000),
            load: LoadSpec {
                clients: 1,
                group: "g".into(),
                hold: Duration::ZERO,
                view_bound_ms: 500,
                give_up: Duration::ZERO,
                tag: "t".into(),
            },
        }
    }

    fn round(admit_ms: Option<f64>) -> Round {
        Round {
            round: 1,
            fault: Fault::Kill,
            victim: 1,
            new_leader: Some(2),
            detect_ms: Some(300.0),
            elect_ms: Some(400.0),
            admit_ms,
            fresh_ms: Some(450.0),
            start_ns: 1_000,
            end_ns: 5_000,
        }
    }

    #[test]
    fn a_slow_round_fails_the_drill_and_is_marked() {
        let ledger = Ledger::default();
        let ok = failover(&spec(), vec![round(Some(500.0))], &ledger, None, vec![]);
        assert!(ok.verdict.pass, "{:?}", ok.verdict);
        let slow = failover(&spec(), vec![round(Some(1500.0))], &ledger, None, vec![]);
        assert!(!slow.verdict.pass);
        assert!(failover_markdown(&slow).contains("1500 (!)"));
        let never = failover(&spec(), vec![round(None)], &ledger, None, vec![]);
        assert!(never.verdict.reasons[0].contains("never"));
    }

    #[test]
    fn an_early_stop_fails_the_drill_and_says_what_was_healed() {
        let r = failover(
            &spec(),
            vec![],
            &Ledger::default(),
            Some("interrupted".into()),
            vec!["node 2 healed".into()],
        );
        assert!(!r.verdict.pass);
        assert!(failover_markdown(&r).contains("STOPPED EARLY (interrupted); node 2 healed"));
    }

    #[test]
    fn a_failed_admission_fails_a_rolling_restart() {
        let ledger = Ledger::default();
        assert!(rolling(vec![], &ledger, None, vec![]).verdict.pass);
        ledger.failed(5);
        let r = rolling(vec![], &ledger, None, vec![]);
        assert!(!r.verdict.pass);
        assert!(rolling_markdown(&r).contains("1 failed beyond client retries"));
    }
}
