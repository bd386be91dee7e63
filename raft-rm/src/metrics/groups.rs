//! Per-group series for resource groups whose spec sets `jmxExport` (what
//! Trino exports as JMX beans, here as Prometheus series on `/metrics`).
//!
//! - Gauges are computed at scrape time from the applied state, through the
//!   same view `GET /v1/resource-groups` answers (ledger counts, coordinators'
//!   reports for eventual groups, stamped usage): every replica that applied
//!   the same entries exports the same figures, and a group that leaves the
//!   view (drained, or no longer exported) leaves the output with it.
//! - Counters of admissions and rejections are counted where this node
//!   applies committed commands, so every replica counts the same entries.
//!   They start at zero with the process (as any Prometheus counter may)
//!   and count what it applies: at start, the entries after the latest
//!   snapshot; nothing that a snapshot installed from the leader covers.
//!
//! A group counts what its descendants do, as its running and queued
//! figures do. At most [`MAX_GROUPS`] groups are exported (the first by id);
//! the rest are counted in `raft_rm_group_metrics_omitted_groups` and logged
//! once.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use common::api::{GroupView, Mode, View};
use common::resource_groups::limits::{running_limit, soft_memory_limit_bytes};
use common::resource_groups::{self as resource_groups, RunLimits};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::machine::admission::{Admission, Decision, EventKind};
use crate::machine::{Command, Response};

/// Most groups exported (and counted) at once: a `${USER}` template can
/// make a group per user, and every group costs a dozen series.
pub const MAX_GROUPS: usize = 1_000;

/// One exported group's figures at a scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSample {
    pub id: String,
    pub linearizable: bool,
    pub running: u32,
    pub queued: u32,
    pub memory_bytes: u64,
    /// CPU time charged and not yet regenerated.
    pub cpu_ms: u64,
    pub hard_concurrency_limit: u32,
    /// The concurrency limit after the CPU penalty (0 at the hard CPU limit).
    pub running_limit: u32,
    pub max_queued: u32,
    pub soft_memory_limit_bytes: Option<u64>,
}

/// What one scrape exports: the groups, and how many were left out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    pub groups: Vec<GroupSample>,
    pub omitted: usize,
}

/// The spec `jmxExport` of group `id` under `adm`'s configuration.
fn exported(adm: &Admission, id: &str) -> bool {
    adm.config
        .as_ref()
        .and_then(|c| resource_groups::resolve(&c.roots, id))
        .and_then(|chain| chain.last().map(|s| s.jmx_export))
        .unwrap_or(false)
}

/// The exported groups of `view` (built from `adm`), in id order, at most
/// [`MAX_GROUPS`] of them.
pub fn scrape(adm: &Admission, view: &View) -> Scrape {
    let mut out = Scrape::default();
    for g in view.groups.iter().filter(|g| exported(adm, &g.id)) {
        if out.groups.len() == MAX_GROUPS {
            out.omitted += 1;
            continue;
        }
        out.groups.push(sample(adm, g, view.cluster_memory_bytes));
    }
    out
}

fn sample(adm: &Admission, g: &GroupView, cluster_memory_bytes: u64) -> GroupSample {
    // A live linearizable group runs under the limits it holds; any other
    // under its spec's.
    let (limits, max_queued) = match adm.groups.get(&g.id) {
        Some(live) => (live.limits.run(), live.limits.max_queued),
        None => {
            let spec = adm
                .config
                .as_ref()
                .and_then(|c| resource_groups::resolve(&c.roots, &g.id))
                .and_then(|chain| chain.last().map(|s| s.run_limits()));
            let limits = spec.unwrap_or(RunLimits {
                hard_concurrency_limit: g.hard_concurrency_limit,
                soft_memory_limit: None,
                cpu_limits: None,
            });
            (limits, g.max_queued)
        }
    };
    GroupSample {
        id: g.id.clone(),
        linearizable: g.mode == Mode::Linearizable,
        running: g.running,
        queued: g.queued,
        memory_bytes: g.memory_bytes,
        cpu_ms: g.cpu_ms,
        hard_concurrency_limit: limits.hard_concurrency_limit,
        running_limit: running_limit(&limits, g.cpu_ms),
        max_queued,
        soft_memory_limit_bytes: soft_memory_limit_bytes(&limits, cluster_memory_bytes),
    }
}

/// Admissions and rejections of one group since this process started.
#[derive(Debug, Default, Clone, PartialEq)]
struct Counts {
    admitted: u64,
    rejected: BTreeMap<&'static str, u64>,
}

/// The per-group series: counters kept as commands are applied, gauges
/// handed in for each scrape. Registered in the node's registry as a
/// collector (see [`GroupCollector`]).
#[derive(Debug, Default)]
pub struct GroupMetrics {
    counts: Mutex<BTreeMap<String, Counts>>,
    /// The groups of the scrape being encoded.
    current: Mutex<Scrape>,
    /// One scrape at a time: held from handing in its groups to the end
    /// of the encoding.
    scraping: Mutex<()>,
    cut_logged: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Counters stay usable whatever a panicking holder did.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// For each command of `command` (one, or a batch's items), whether it is
/// an acquire of a query the ledger does not hold yet: a retry of an
/// admitted acquire answers `Admitted` again and must not count twice.
/// Taken before the command is applied.
pub fn fresh_acquires(adm: &Admission, command: &Command) -> Vec<bool> {
    let mut seen = std::collections::BTreeSet::new();
    let mut fresh = |c: &Command| match c {
        Command::Acquire(req) => {
            !adm.queries.contains_key(&req.query_id) && seen.insert(req.query_id.clone())
        }
        _ => false,
    };
    match command {
        Command::Batch(items) => items.iter().map(&mut fresh).collect(),
        c => vec![fresh(c)],
    }
}

impl GroupMetrics {
    /// Counts what the command applied at log `index` did to exported
    /// groups: its acquires' admissions and rejections, and the queued
    /// queries it promoted (the events it added). `adm` is the state after
    /// the command, `fresh` what [`fresh_acquires`] said before it.
    pub fn applied(
        &self,
        adm: &Admission,
        index: u64,
        command: &Command,
        fresh: &[bool],
        response: &Response,
    ) {
        let pairs: Vec<(&Command, &Response)> = match (command, response) {
            (Command::Batch(items), Response::Batch(answers)) => {
                items.iter().zip(answers.iter()).collect()
            }
            (Command::Batch(_), _) => Vec::new(),
            one => vec![one],
        };
        let mut counts = lock(&self.counts);
        if matches!(response, Response::ConfigApplied { .. }) {
            counts.retain(|id, _| exported(adm, id));
        }
        for ((c, r), fresh) in pairs.into_iter().zip(fresh.iter()) {
            let (Command::Acquire(req), Response::Admission(d)) = (c, r) else {
                continue;
            };
            match d {
                Decision::Admitted { .. } if *fresh => {
                    self.count(&mut counts, adm, &req.group, |c| c.admitted += 1)
                }
                Decision::Rejected { reason } => {
                    let name = crate::http::admission::wire_reason(reason).name();
                    self.count(&mut counts, adm, &req.group, |c| {
                        *c.rejected.entry(name).or_default() += 1
                    })
                }
                _ => {}
            }
        }
        // Events are kept in log-index order: this entry's are at the back.
        let promoted: Vec<&str> = adm
            .events
            .iter()
            .rev()
            .take_while(|e| e.index == index)
            .filter(|e| matches!(e.kind, EventKind::Promoted { .. }))
            .map(|e| e.group.as_str())
            .collect();
        for group in promoted.into_iter().rev() {
            self.count(&mut counts, adm, group, |c| c.admitted += 1);
        }
    }

    /// Applies `bump` to `group` and each ancestor that is exported.
    fn count(
        &self,
        counts: &mut BTreeMap<String, Counts>,
        adm: &Admission,
        group: &str,
        bump: impl Fn(&mut Counts),
    ) {
        for id in resource_groups::chain_ids(group) {
            if !exported(adm, &id) {
                continue;
            }
            if !counts.contains_key(&id) && counts.len() >= MAX_GROUPS {
                // Make room from groups that hold no queries now (a
                // template's groups of users gone); the applied state
                // decides, so every replica keeps the same ones.
                counts.retain(|g, _| adm.groups.contains_key(g));
                if counts.len() >= MAX_GROUPS {
                    self.cut();
                    continue;
                }
            }
            bump(counts.entry(id).or_default());
        }
    }

    fn cut(&self) {
        if !self.cut_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                max = MAX_GROUPS,
                "more resource groups with jmxExport than per-group metrics export; the rest are left out"
            );
        }
    }

    /// Hands in the groups of a scrape and runs `encode` with them in
    /// place (the collector reads them).
    pub fn with_scrape<T>(&self, scrape: Scrape, encode: impl FnOnce() -> T) -> T {
        let _one = lock(&self.scraping);
        if scrape.omitted > 0 {
            self.cut();
        }
        *lock(&self.current) = scrape;
        let out = encode();
        *lock(&self.current) = Scrape::default();
        out
    }

    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let scrape = lock(&self.current).clone();
        let counts = lock(&self.counts).clone();
        let groups = &scrape.groups;
        let gauges: [Gauge; 8] = [
            (
                "group_running_queries",
                "Running queries of a jmxExport group, its descendants' included (at most 1000 groups are exported, the first by id)",
                |s| Some(s.running as f64),
            ),
            (
                "group_queued_queries",
                "Queued queries of a jmxExport group, its descendants' included",
                |s| Some(s.queued as f64),
            ),
            (
                "group_memory_bytes",
                "Memory of a jmxExport group's running queries, as last stamped",
                |s| Some(s.memory_bytes as f64),
            ),
            (
                "group_cpu_charged_seconds",
                "CPU time charged to a jmxExport group and not yet regenerated, as last stamped",
                |s| Some(s.cpu_ms as f64 / 1000.0),
            ),
            (
                "group_hard_concurrency_limit",
                "hardConcurrencyLimit a jmxExport group runs under",
                |s| Some(s.hard_concurrency_limit as f64),
            ),
            (
                "group_running_limit",
                "Concurrency limit in force for a jmxExport group: the hard limit less the CPU penalty",
                |s| Some(s.running_limit as f64),
            ),
            (
                "group_max_queued",
                "maxQueued a jmxExport group runs under",
                |s| Some(s.max_queued as f64),
            ),
            (
                "group_soft_memory_limit_bytes",
                "softMemoryLimit of a jmxExport group in bytes (a percentage of the cluster's memory as last stamped); absent when unset",
                |s| s.soft_memory_limit_bytes.map(|b| b as f64),
            ),
        ];
        for (name, help, value) in gauges {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for s in groups {
                if let Some(v) = value(s) {
                    m.encode_family(&labels(s))?.encode_gauge(&v)?;
                }
            }
        }
        let linearizable = || {
            groups
                .iter()
                .filter(|s| s.linearizable)
                .map(|s| (s, counts.get(&s.id).cloned().unwrap_or_default()))
        };
        let mut m = encoder.encode_descriptor(
            "group_admissions",
            "Queries a linearizable jmxExport group admitted (at once or from its queue) in entries this RM applied since it started",
            None,
            MetricType::Counter,
        )?;
        for (s, c) in linearizable() {
            m.encode_family(&labels(s))?
                .encode_counter::<NoLabelSet, _, u64>(&c.admitted, None)?;
        }
        let mut m = encoder.encode_descriptor(
            "group_rejections",
            "Acquires a linearizable jmxExport group rejected, by Trino's error name, in entries this RM applied since it started",
            None,
            MetricType::Counter,
        )?;
        for (s, c) in linearizable() {
            for (reason, n) in &c.rejected {
                let [group, mode] = labels(s);
                m.encode_family(&[group, mode, ("reason", *reason)])?
                    .encode_counter::<NoLabelSet, _, u64>(n, None)?;
            }
        }
        let mut m = encoder.encode_descriptor(
            "group_metrics_omitted_groups",
            "jmxExport groups left out of these per-group series (at most 1000 groups are exported, the first by id)",
            None,
            MetricType::Gauge,
        )?;
        m.encode_gauge(&(scrape.omitted as i64))?;
        Ok(())
    }
}

/// A gauge's name, help and value of a group (`None`: no sample).
type Gauge = (&'static str, &'static str, fn(&GroupSample) -> Option<f64>);

fn labels(s: &GroupSample) -> [(&'static str, &str); 2] {
    let mode = if s.linearizable {
        "linearizable"
    } else {
        "eventual"
    };
    [("group", s.id.as_str()), ("mode", mode)]
}

/// The registry's handle on [`GroupMetrics`].
#[derive(Debug)]
pub struct GroupCollector(pub std::sync::Arc<GroupMetrics>);

impl Collector for GroupCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        self.0.encode(encoder)
    }
}

#[cfg(test)]
mod tests {
    use common::resource_groups::{Consistency, ResourceUsage};

    use super::*;
    use crate::machine::admission::{AcquireRequest, GroupsConfig};
    use crate::machine::Request;
    use crate::metrics::Metrics;
    use crate::store::state_machine::AppliedState;

    const CONFIG: &str = r#"{"rootGroups":[
      {"name":"global","hardConcurrencyLimit":10,"maxQueued":10,"softMemoryLimit":"50%",
       "jmxExport":true,"subGroups":[
        {"name":"${USER}","hardConcurrencyLimit":1,"maxQueued":1,"jmxExport":true},
        {"name":"quiet","hardConcurrencyLimit":1,"maxQueued":1}]},
      {"name":"ev","hardConcurrencyLimit":3,"maxQueued":4,"softMemoryLimit":"1MB","jmxExport":true,
       "consistency":{"mode":"eventual","maxStalenessMs":500}}]}"#;

    /// `CONFIG` with `ev` gone and the users' groups no longer exported.
    const LATER: &str = r#"{"rootGroups":[
      {"name":"global","hardConcurrencyLimit":10,"maxQueued":10,"softMemoryLimit":"50%",
       "jmxExport":true,"subGroups":[
        {"name":"${USER}","hardConcurrencyLimit":1,"maxQueued":1},
        {"name":"quiet","hardConcurrencyLimit":1,"maxQueued":1}]}]}"#;

    /// A node's applied state and metrics, fed commands as the state
    /// machine store feeds them.
    struct Node {
        applied: AppliedState,
        metrics: Metrics,
        index: u64,
    }

    impl Node {
        fn new() -> Node {
            let mut n = Node {
                applied: AppliedState::default(),
                metrics: Metrics::new(),
                index: 0,
            };
            n.configure(CONFIG);
            n
        }

        fn run(&mut self, command: Command) -> Response {
            self.index += 1;
            let adm = &self.applied.state.admission;
            let fresh = fresh_acquires(adm, &command);
            let request = Request {
                leader_time_ms: 1_000 + self.index,
                command,
            };
            let response = self.applied.state.apply(self.index, &request);
            self.metrics.groups.applied(
                &self.applied.state.admission,
                self.index,
                &request.command,
                &fresh,
                &response,
            );
            response
        }

        fn configure(&mut self, text: &str) {
            let rg = resource_groups::parse(text, &Consistency::Linearizable)
                .unwrap_or_else(|e| panic!("{e}"));
            let answer = self.run(Command::SetConfig(GroupsConfig {
                version: self.index + 1,
                roots: rg.roots,
                source: text.into(),
                settings: Default::default(),
            }));
            assert!(
                matches!(answer, Response::ConfigApplied { .. }),
                "{answer:?}"
            );
        }

        fn session(&mut self) -> u64 {
            match self.run(Command::RegisterSession {
                coordinator: "c1".into(),
            }) {
                Response::Session { session, .. } => session,
                other => panic!("{other:?}"),
            }
        }

        fn render(&self) -> String {
            let view = crate::http::groups::view_of(&self.applied, 1, 2_000);
            let scrape = scrape(&self.applied.state.admission, &view);
            self.metrics
                .groups
                .with_scrape(scrape, || self.metrics.render_registry())
        }
    }

    fn acquire(q: &str, group: &str, session: u64) -> Command {
        Command::Acquire(AcquireRequest {
            query_id: q.into(),
            group: group.into(),
            coordinator: "c1".into(),
            session,
            priority: 0,
            payload: String::new(),
            max_queued_ms: None,
            template: Vec::new(),
        })
    }

    fn decision(r: Response) -> Decision {
        match r {
            Response::Admission(d) => d,
            other => panic!("{other:?}"),
        }
    }

    /// The value of series `name{labels}` in `text`.
    fn value(text: &str, name: &str, labels: &str) -> Option<f64> {
        let series = format!("{name}{{{labels}}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.trim().parse().ok())
    }

    const ALICE: &str = r#"group="global.alice",mode="linearizable""#;
    const GLOBAL: &str = r#"group="global",mode="linearizable""#;
    const EV: &str = r#"group="ev",mode="eventual""#;

    #[test]
    fn only_jmx_export_groups_are_rendered_with_their_figures_and_removed_ones_vanish() {
        let mut n = Node::new();
        let s = n.session();
        let admitted = |d: &Decision| matches!(d, Decision::Admitted { .. });
        assert!(admitted(&decision(n.run(acquire("q1", "global.alice", s)))));
        // A retry answers Admitted again: not a second admission.
        assert!(admitted(&decision(n.run(acquire("q1", "global.alice", s)))));
        assert!(matches!(
            decision(n.run(acquire("q2", "global.alice", s))),
            Decision::Queued { .. }
        ));
        assert!(matches!(
            decision(n.run(acquire("q3", "global.alice", s))),
            Decision::Rejected { .. }
        ));
        // Not exported itself, but counted by its exported parent.
        assert!(admitted(&decision(n.run(acquire("q4", "global.quiet", s)))));
        // One batch acquiring q5 twice admits it once.
        n.run(Command::Batch(vec![
            acquire("q5", "global.bob", s),
            acquire("q5", "global.bob", s),
        ]));
        // Releasing q1 promotes q2 from alice's queue.
        n.run(Command::Release {
            query_id: "q1".into(),
        });
        let usage = &mut n.applied.state.admission.usage;
        usage.cluster_memory_bytes = 1_000;
        usage.groups.insert(
            "global".into(),
            ResourceUsage {
                memory_bytes: 7,
                cpu_ms: 1_500,
            },
        );

        let text = n.render();
        let v = |name: &str, labels: &str| value(&text, name, labels);
        assert_eq!(
            v("raft_rm_group_running_queries", GLOBAL),
            Some(3.0),
            "{text}"
        );
        assert_eq!(v("raft_rm_group_running_queries", ALICE), Some(1.0));
        assert_eq!(v("raft_rm_group_queued_queries", ALICE), Some(0.0));
        assert_eq!(v("raft_rm_group_memory_bytes", GLOBAL), Some(7.0));
        assert_eq!(v("raft_rm_group_cpu_charged_seconds", GLOBAL), Some(1.5));
        assert_eq!(
            v("raft_rm_group_hard_concurrency_limit", GLOBAL),
            Some(10.0)
        );
        assert_eq!(v("raft_rm_group_running_limit", ALICE), Some(1.0));
        assert_eq!(v("raft_rm_group_max_queued", ALICE), Some(1.0));
        assert_eq!(
            v("raft_rm_group_soft_memory_limit_bytes", GLOBAL),
            Some(500.0),
            "50% of the stamped cluster memory"
        );
        assert_eq!(v("raft_rm_group_soft_memory_limit_bytes", ALICE), None);
        assert_eq!(v("raft_rm_group_admissions_total", ALICE), Some(2.0));
        assert_eq!(v("raft_rm_group_admissions_total", GLOBAL), Some(4.0));
        let bob = r#"group="global.bob",mode="linearizable""#;
        assert_eq!(v("raft_rm_group_admissions_total", bob), Some(1.0));
        let full = |g: &str| format!(r#"{g},reason="QUERY_QUEUE_FULL""#);
        assert_eq!(v("raft_rm_group_rejections_total", &full(ALICE)), Some(1.0));
        assert_eq!(
            v("raft_rm_group_rejections_total", &full(GLOBAL)),
            Some(1.0)
        );
        // An eventual group: its figures from the spec, no counters.
        assert_eq!(v("raft_rm_group_max_queued", EV), Some(4.0));
        assert_eq!(
            v("raft_rm_group_soft_memory_limit_bytes", EV),
            Some(1_048_576.0)
        );
        assert_eq!(v("raft_rm_group_admissions_total", EV), None);
        assert!(!text.contains("global.quiet"), "{text}");
        assert!(
            text.contains("\nraft_rm_group_metrics_omitted_groups 0\n"),
            "{text}"
        );

        // ev removed, the users' groups no longer exported: their series go.
        n.configure(LATER);
        let text = n.render();
        assert!(!text.contains("group=\"ev\""), "{text}");
        assert!(!text.contains("global.alice"), "{text}");
        assert!(!text.contains("global.bob"), "{text}");
        assert_eq!(
            value(&text, "raft_rm_group_admissions_total", GLOBAL),
            Some(4.0),
            "a group still exported keeps counting"
        );
    }

    /// A template's groups beyond [`MAX_GROUPS`] are left out, and said so.
    #[test]
    fn at_most_max_groups_are_exported() {
        let n = Node::new();
        let group = |id: String| GroupView {
            id,
            mode: Mode::Linearizable,
            max_staleness_ms: None,
            running: 1,
            queued: 0,
            hard_concurrency_limit: 1,
            max_queued: 1,
            draining: false,
            memory_bytes: 0,
            cpu_ms: 0,
        };
        let mut view = crate::http::groups::view_of(&n.applied, 1, 2_000);
        view.groups
            .extend((0..MAX_GROUPS + 5).map(|i| group(format!("global.u{i:05}"))));
        view.groups.sort_by(|a, b| a.id.cmp(&b.id));
        let s = scrape(&n.applied.state.admission, &view);
        assert_eq!(s.groups.len(), MAX_GROUPS);
        // global, ev and the users: 1,007 exported groups.
        assert_eq!(s.omitted, 7);
        let text = n
            .metrics
            .groups
            .with_scrape(s, || n.metrics.render_registry());
        assert!(
            text.contains("raft_rm_group_metrics_omitted_groups 7"),
            "{text}"
        );
    }
}
