//! The file's shape (Trino's field names) and its validation into specs.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::limits::CpuLimits;
use super::selector::Selector;
use super::spec::{
    template_name_error, Consistency, GroupSpec, MemoryLimit, PerQueryLimits, SchedulingPolicy,
};
use super::{ConfigErrors, ResourceGroups};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawConfig {
    root_groups: Vec<RawGroup>,
    #[serde(default)]
    selectors: Vec<RawSelector>,
    cpu_quota_period: Option<String>,
    physical_data_scan_quota_period: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawGroup {
    name: String,
    hard_concurrency_limit: Option<i64>,
    /// Trino's deprecated alias of `hardConcurrencyLimit`.
    max_running: Option<i64>,
    /// Trino reads a missing one as 0 (no queue).
    #[serde(default)]
    max_queued: i64,
    soft_concurrency_limit: Option<i64>,
    soft_memory_limit: Option<String>,
    scheduling_policy: Option<String>,
    scheduling_weight: Option<i64>,
    hard_cpu_limit: Option<String>,
    soft_cpu_limit: Option<String>,
    hard_physical_data_scan_limit: Option<String>,
    soft_physical_data_scan_limit: Option<String>,
    jmx_export: Option<bool>,
    /// Presto's per-query limits of a group.
    per_query_limits: Option<RawPerQueryLimits>,
    /// Presto's cap on the workers one query may use.
    workers_per_query_limit: Option<i64>,
    /// The workers a group's queries may use (a node group).
    node_group: Option<String>,
    /// Presto's longest queueing time of a query of the group (and its
    /// older name).
    queued_time_limit: Option<String>,
    queued_timeout: Option<String>,
    /// Presto's longest running time of a query of the group (and its
    /// older name).
    running_time_limit: Option<String>,
    running_timeout: Option<String>,
    #[serde(default)]
    sub_groups: Vec<RawGroup>,
    consistency: Option<RawConsistency>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawPerQueryLimits {
    execution_time_limit: Option<String>,
    total_memory_limit: Option<String>,
    cpu_time_limit: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawConsistency {
    mode: String,
    max_staleness_ms: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawSelector {
    pub user: Option<String>,
    pub user_group: Option<String>,
    pub source: Option<String>,
    pub query_type: Option<String>,
    pub client_tags: Option<Vec<String>>,
    pub original_user: Option<String>,
    pub authenticated_user: Option<String>,
    /// Trino's `selectorResourceEstimate`: ranges of the client's
    /// estimates.
    pub selector_resource_estimate: Option<RawResourceEstimate>,
    /// Presto's `clientInfo`, `principal` and `schema` patterns: accepted,
    /// not matched yet (the selector matches no query, with a warning).
    pub client_info: Option<String>,
    pub principal: Option<String>,
    pub schema: Option<String>,
    pub group: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawResourceEstimate {
    pub execution_time: Option<RawRange>,
    pub cpu_time: Option<RawRange>,
    pub peak_memory: Option<RawRange>,
}

/// Durations (`1h`) or sizes (`4GB`), both bounds optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRange {
    pub min: Option<String>,
    pub max: Option<String>,
}

/// Collects errors (all of them, not just the first) and warnings.
#[derive(Default)]
struct Report {
    errors: Vec<String>,
    warned: BTreeSet<&'static str>,
    warnings: Vec<String>,
}

impl Report {
    fn error(&mut self, path: &str, message: impl std::fmt::Display) {
        self.errors.push(format!("{path}: {message}"));
    }

    fn warn(&mut self, path: &str, message: impl std::fmt::Display) {
        self.warnings.push(format!("{path}: {message}"));
    }

    /// Once per field name, at its first occurrence.
    fn unenforced(&mut self, field: &'static str, path: &str) {
        if self.warned.insert(field) {
            self.warnings.push(format!(
                "{path}: {field} is accepted but not enforced yet (reported once)"
            ));
        }
    }

    /// Once per selector field that we accept but cannot match yet.
    fn unmatched(&mut self, field: &'static str, path: &str) {
        if self.warned.insert(field) {
            self.warnings.push(format!(
                "{path}: {field} is accepted but not matched yet: selectors that use it match no query (reported once)"
            ));
        }
    }
}

/// Trino's query types; a selector may spell them in any case.
pub(super) const QUERY_TYPES: &[&str] = &[
    "SELECT",
    "EXPLAIN",
    "DESCRIBE",
    "INSERT",
    "UPDATE",
    "DELETE",
    "MERGE",
    "ANALYZE",
    "DATA_DEFINITION",
    "ALTER_TABLE_EXECUTE",
];

impl RawConfig {
    pub(super) fn validate(self, default: &Consistency) -> Result<ResourceGroups, ConfigErrors> {
        let mut report = Report::default();
        if let Some(text) = &self.physical_data_scan_quota_period {
            if let Err(e) = parse_duration(text) {
                report.error("physicalDataScanQuotaPeriod", e);
            }
            report.unenforced("physicalDataScanQuotaPeriod", "physicalDataScanQuotaPeriod");
        }
        let file = FileWide {
            cpu_quota_period_ms: self.cpu_quota_period.as_deref().and_then(|text| {
                match parse_duration(text) {
                    Ok(d) if d.as_millis() > 0 => {
                        Some(d.as_millis().min(u128::from(u64::MAX)) as u64)
                    }
                    Ok(_) => {
                        report.error("cpuQuotaPeriod", "must be positive");
                        None
                    }
                    Err(e) => {
                        report.error("cpuQuotaPeriod", e);
                        None
                    }
                }
            }),
        };
        if self.root_groups.is_empty() {
            report.error("rootGroups", "at least one root group is required");
        }
        let roots = validate_level(
            &self.root_groups,
            "rootGroups",
            default,
            None,
            &file,
            &mut report,
        );
        let mut selectors = Vec::new();
        for (i, mut raw) in self.selectors.into_iter().enumerate() {
            let path = format!("selectors[{i}]");
            if let Some(t) = &raw.query_type {
                let upper = t.to_ascii_uppercase();
                if QUERY_TYPES.contains(&upper.as_str()) {
                    raw.query_type = Some(upper);
                } else {
                    report.error(
                        &format!("{path}.queryType"),
                        format!("'{t}' is not one of {}", QUERY_TYPES.join(", ")),
                    );
                }
            }
            for (field, given) in [
                ("clientInfo", raw.client_info.is_some()),
                ("principal", raw.principal.is_some()),
                ("schema", raw.schema.is_some()),
            ] {
                if given {
                    report.unmatched(field, &format!("{path}.{field}"));
                }
            }
            // A group that names no spec is an error already; compiling
            // anyway reports the selector's other problems too.
            let spec_path =
                check_selector_group(&roots, &raw.group, &format!("{path}.group"), &mut report)
                    .unwrap_or_default();
            match Selector::compile(raw, spec_path) {
                Ok(s) => selectors.push(s),
                Err((field, message)) => report.error(&format!("{path}.{field}"), message),
            }
        }
        if report.errors.is_empty() {
            Ok(ResourceGroups {
                roots,
                selectors,
                warnings: report.warnings,
            })
        } else {
            Err(ConfigErrors(report.errors))
        }
    }
}

/// File-level settings every group's validation needs.
struct FileWide {
    cpu_quota_period_ms: Option<u64>,
}

fn validate_level(
    groups: &[RawGroup],
    path: &str,
    inherited: &Consistency,
    parent_policy: Option<SchedulingPolicy>,
    file: &FileWide,
    report: &mut Report,
) -> Vec<GroupSpec> {
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        let at = format!("{path}[{i}]");
        if !names.insert(g.name.as_str()) {
            report.error(
                &format!("{at}.name"),
                format!("'{}' appears twice among its siblings", g.name),
            );
        }
        out.push(validate_group(
            g,
            &at,
            inherited,
            parent_policy,
            file,
            report,
        ));
    }
    out
}

fn non_negative(value: i64, path: &str, report: &mut Report) -> u32 {
    if value < 0 {
        report.error(path, "must be >= 0");
        return 0;
    }
    u32::try_from(value).unwrap_or_else(|_| {
        report.error(path, format!("must be at most {}", u32::MAX));
        0
    })
}

fn validate_group(
    g: &RawGroup,
    at: &str,
    inherited: &Consistency,
    parent_policy: Option<SchedulingPolicy>,
    file: &FileWide,
    report: &mut Report,
) -> GroupSpec {
    if g.name.is_empty() || g.name.contains('.') {
        report.error(
            &format!("{at}.name"),
            "must be non-empty and contain no '.'",
        );
    } else if let Some(problem) = template_name_error(&g.name) {
        report.error(&format!("{at}.name"), problem);
    }
    let hard = match g.hard_concurrency_limit.or(g.max_running) {
        Some(v) => non_negative(v, &format!("{at}.hardConcurrencyLimit"), report),
        None => {
            report.error(
                &format!("{at}.hardConcurrencyLimit"),
                "required (or its old name maxRunning)",
            );
            0
        }
    };
    let max_queued = non_negative(g.max_queued, &format!("{at}.maxQueued"), report);
    let soft = g.soft_concurrency_limit.map(|v| {
        let soft = non_negative(v, &format!("{at}.softConcurrencyLimit"), report);
        if soft > hard {
            report.error(
                &format!("{at}.softConcurrencyLimit"),
                format!("{soft} is above hardConcurrencyLimit {hard}"),
            );
        }
        soft
    });
    let weight = match g.scheduling_weight {
        None => 1,
        Some(w) if w < 1 => {
            report.error(&format!("{at}.schedulingWeight"), "must be >= 1");
            1
        }
        Some(w) => non_negative(w, &format!("{at}.schedulingWeight"), report),
    };
    // Names in any case, as Trino reads them; a group that names none
    // under a query_priority parent inherits it.
    let policy = match g
        .scheduling_policy
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None if parent_policy == Some(SchedulingPolicy::QueryPriority) => {
            SchedulingPolicy::QueryPriority
        }
        None | Some("fair") => SchedulingPolicy::Fair,
        Some("weighted_fair") => SchedulingPolicy::WeightedFair,
        Some("weighted") => SchedulingPolicy::Weighted,
        Some("query_priority") => SchedulingPolicy::QueryPriority,
        Some(_) => {
            let other = g.scheduling_policy.as_deref().unwrap_or_default();
            report.error(
                &format!("{at}.schedulingPolicy"),
                format!("'{other}' is not one of fair, weighted_fair, weighted, query_priority"),
            );
            SchedulingPolicy::Fair
        }
    };
    let memory = g.soft_memory_limit.as_deref().and_then(|text| {
        parse_memory_limit(text)
            .map_err(|e| report.error(&format!("{at}.softMemoryLimit"), e))
            .ok()
    });
    let cpu_limits = cpu_limits(g, at, file, report);
    let mut per_query_limits = g
        .per_query_limits
        .as_ref()
        .map(|l| per_query_limits(l, &format!("{at}.perQueryLimits"), report))
        .unwrap_or_default();
    let running = [
        ("runningTimeLimit", &g.running_time_limit),
        ("runningTimeout", &g.running_timeout),
    ]
    .into_iter()
    .filter_map(|(field, v)| {
        v.as_deref()
            .and_then(|t| duration_ms(t, &format!("{at}.{field}"), report))
    })
    .min();
    // A running time limit is an execution time limit of each query.
    per_query_limits.execution_time_ms = match (per_query_limits.execution_time_ms, running) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let queued_time_limit_ms = [
        ("queuedTimeLimit", &g.queued_time_limit),
        ("queuedTimeout", &g.queued_timeout),
    ]
    .into_iter()
    .filter_map(|(field, v)| {
        v.as_deref()
            .and_then(|t| duration_ms(t, &format!("{at}.{field}"), report))
    })
    .min();
    if let Some(name) = g.node_group.as_deref().filter(|n| {
        n.is_empty()
            || !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }) {
        report.error(
            &format!("{at}.nodeGroup"),
            format!("'{name}' is not a node group name (letters, digits, '_' and '-')"),
        );
    } else if g.node_group.is_some() {
        report.warn(
            &format!("{at}.nodeGroup"),
            "accepted; the queries of every group may run on any worker",
        );
    }
    if let Some(n) = g.workers_per_query_limit {
        non_negative(n, &format!("{at}.workersPerQueryLimit"), report);
        report.warn(
            &format!("{at}.workersPerQueryLimit"),
            "accepted; every query runs its task on one worker, so any limit of 1 or more holds",
        );
    }
    for (field, value) in [
        (
            "hardPhysicalDataScanLimit",
            &g.hard_physical_data_scan_limit,
        ),
        (
            "softPhysicalDataScanLimit",
            &g.soft_physical_data_scan_limit,
        ),
    ] {
        if let Some(text) = value {
            if !matches!(parse_memory_limit(text), Ok(MemoryLimit::Bytes(_))) {
                report.error(
                    &format!("{at}.{field}"),
                    format!("'{text}' is not an absolute size like 1GB"),
                );
            }
            report.unenforced(field, &format!("{at}.{field}"));
        }
    }
    let consistency = match &g.consistency {
        None => inherited.clone(),
        Some(c) => parse_consistency(c, &format!("{at}.consistency"), report)
            .unwrap_or_else(|| inherited.clone()),
    };
    check_weights(g, policy, at, report);
    let sub_groups = validate_level(
        &g.sub_groups,
        &format!("{at}.subGroups"),
        &consistency,
        Some(policy),
        file,
        report,
    );
    // As in Trino: priorities are compared across the whole subtree, so
    // every group under a query_priority group must order by priority too.
    if policy == SchedulingPolicy::QueryPriority {
        for (i, sub) in sub_groups.iter().enumerate() {
            if sub.scheduling_policy != SchedulingPolicy::QueryPriority {
                report.error(
                    &format!("{at}.subGroups[{i}].schedulingPolicy"),
                    "must be query_priority under a query_priority group",
                );
            }
        }
    }
    GroupSpec {
        name: g.name.clone(),
        hard_concurrency_limit: hard,
        max_queued,
        soft_concurrency_limit: soft,
        soft_memory_limit: memory,
        cpu_limits,
        per_query_limits,
        queued_time_limit_ms,
        jmx_export: g.jmx_export.unwrap_or(false),
        scheduling_policy: policy,
        scheduling_weight: weight,
        consistency,
        sub_groups,
    }
}

/// As Trino: under an explicit `weighted` or `weighted_fair` policy,
/// subgroups give a `schedulingWeight` all or none; under another explicit
/// policy, none may give one. (A group that names no policy is not
/// checked.)
fn check_weights(g: &RawGroup, policy: SchedulingPolicy, at: &str, report: &mut Report) {
    if g.scheduling_policy.is_none() {
        return;
    }
    let given = g
        .sub_groups
        .iter()
        .filter(|s| s.scheduling_weight.is_some())
        .count();
    match policy {
        SchedulingPolicy::Weighted | SchedulingPolicy::WeightedFair => {
            if given > 0 && given < g.sub_groups.len() {
                if let Some(i) = g
                    .sub_groups
                    .iter()
                    .position(|s| s.scheduling_weight.is_none())
                {
                    report.error(
                        &format!("{at}.subGroups[{i}].schedulingWeight"),
                        "must be given for all sibling groups or none",
                    );
                }
            }
        }
        SchedulingPolicy::Fair | SchedulingPolicy::QueryPriority => {
            if let Some(i) = g
                .sub_groups
                .iter()
                .position(|s| s.scheduling_weight.is_some())
            {
                report.error(
                    &format!("{at}.subGroups[{i}].schedulingWeight"),
                    "needs a 'weighted' or 'weighted_fair' schedulingPolicy on its parent",
                );
            }
        }
    }
}

fn duration_ms(text: &str, at: &str, report: &mut Report) -> Option<u64> {
    parse_duration(text)
        .map(|d| d.as_millis().min(u128::from(u64::MAX)) as u64)
        .map_err(|e| report.error(at, e))
        .ok()
}

/// `hardCpuLimit` and `softCpuLimit` (soft needs hard, and is at most
/// hard), which need the file's `cpuQuotaPeriod`, as upstream.
fn cpu_limits(g: &RawGroup, at: &str, file: &FileWide, report: &mut Report) -> Option<CpuLimits> {
    let hard = g
        .hard_cpu_limit
        .as_deref()
        .and_then(|t| duration_ms(t, &format!("{at}.hardCpuLimit"), report));
    let soft = g
        .soft_cpu_limit
        .as_deref()
        .and_then(|t| duration_ms(t, &format!("{at}.softCpuLimit"), report));
    if g.hard_cpu_limit.is_none() && g.soft_cpu_limit.is_none() {
        return None;
    }
    if g.soft_cpu_limit.is_some() && g.hard_cpu_limit.is_none() {
        report.error(&format!("{at}.softCpuLimit"), "needs hardCpuLimit too");
        return None;
    }
    let Some(period_ms) = file.cpu_quota_period_ms else {
        report.error(
            &format!("{at}.hardCpuLimit"),
            "CPU limits need the file's cpuQuotaPeriod",
        );
        return None;
    };
    let hard = hard?;
    if let Some(soft) = soft.filter(|s| *s > hard) {
        report.error(
            &format!("{at}.softCpuLimit"),
            format!("{soft} ms is above hardCpuLimit {hard} ms"),
        );
        return None;
    }
    Some(CpuLimits::new(soft, hard, period_ms))
}

fn per_query_limits(l: &RawPerQueryLimits, at: &str, report: &mut Report) -> PerQueryLimits {
    let total_memory_bytes =
        l.total_memory_limit
            .as_deref()
            .and_then(|text| match parse_memory_limit(text) {
                Ok(MemoryLimit::Bytes(b)) => Some(b),
                _ => {
                    report.error(
                        &format!("{at}.totalMemoryLimit"),
                        format!("'{text}' is not an absolute size like 1GB"),
                    );
                    None
                }
            });
    PerQueryLimits {
        execution_time_ms: l
            .execution_time_limit
            .as_deref()
            .and_then(|t| duration_ms(t, &format!("{at}.executionTimeLimit"), report)),
        total_memory_bytes,
        cpu_time_ms: l
            .cpu_time_limit
            .as_deref()
            .and_then(|t| duration_ms(t, &format!("{at}.cpuTimeLimit"), report)),
    }
}

fn parse_consistency(c: &RawConsistency, at: &str, report: &mut Report) -> Option<Consistency> {
    match (c.mode.as_str(), c.max_staleness_ms) {
        ("linearizable", None) => Some(Consistency::Linearizable),
        ("linearizable", Some(_)) => {
            report.error(
                &format!("{at}.maxStalenessMs"),
                "applies to mode eventual only",
            );
            None
        }
        ("eventual", Some(ms)) if ms > 0 => Some(Consistency::Eventual {
            max_staleness_ms: ms as u64,
        }),
        ("eventual", Some(_)) => {
            report.error(&format!("{at}.maxStalenessMs"), "must be > 0");
            None
        }
        ("eventual", None) => {
            report.error(
                &format!("{at}.maxStalenessMs"),
                "is required for mode eventual",
            );
            None
        }
        (other, _) => {
            report.error(
                &format!("{at}.mode"),
                format!("'{other}' is not one of linearizable, eventual"),
            );
            None
        }
    }
}

/// `80%`, or a data size as Trino writes it: `512MB`, `10GB`, `1.5TB`, `1024B`
/// (binary multiples, as in Trino's DataSize).
pub(super) fn parse_memory_limit(text: &str) -> Result<MemoryLimit, String> {
    let t = text.trim();
    if let Some(p) = t.strip_suffix('%') {
        return match p.trim().parse::<f64>() {
            Ok(v) if (0.0..=100.0).contains(&v) => Ok(MemoryLimit::Percent(v)),
            _ => Err(format!("'{text}' is not a percentage between 0% and 100%")),
        };
    }
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let factor: u64 = match unit.trim() {
        "B" => 1,
        "kB" | "KB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        "TB" => 1 << 40,
        "PB" => 1 << 50,
        _ => {
            return Err(format!(
                "'{text}' is not a size like 512MB or a percentage like 80%"
            ))
        }
    };
    match number.trim().parse::<f64>() {
        Ok(v) if v >= 0.0 && (v * factor as f64) < u64::MAX as f64 => {
            Ok(MemoryLimit::Bytes((v * factor as f64) as u64))
        }
        _ => Err(format!(
            "'{text}' is not a size like 512MB or a percentage like 80%"
        )),
    }
}

/// A selector's `group` must name a leaf: segments are compared by their
/// text, so `global.${USER}` must match a spec named `${USER}` under
/// `global`. Returns the specs' indices, root first (`None`: reported).
fn check_selector_group(
    roots: &[GroupSpec],
    group: &str,
    at: &str,
    report: &mut Report,
) -> Option<Vec<usize>> {
    let mut level = roots;
    let mut leaf = false;
    let mut spec_path = Vec::new();
    for segment in group.split('.') {
        if let Some(problem) = template_name_error(segment) {
            report.error(at, problem);
            return None;
        }
        let Some(index) = level.iter().position(|s| s.name == segment) else {
            report.error(
                at,
                format!("'{group}' names no group ('{segment}' not found)"),
            );
            return None;
        };
        spec_path.push(index);
        leaf = level[index].is_leaf();
        level = &level[index].sub_groups;
    }
    if !leaf {
        // Trino loads such a file and fails the queries it selects.
        report.warn(
            at,
            format!("'{group}' is not a leaf group: queries it selects will fail, as in Trino"),
        );
    }
    Some(spec_path)
}

/// A duration as Trino writes one (airlift's `Duration`): a number and a
/// unit among ns, us, ms, s, m, h, d, as `1h`, `30m`, `1.5d`.
pub(super) fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let seconds: f64 = match unit {
        "ns" => 1e-9,
        "us" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return Err(format!("'{text}' is not a duration like 1h, 30m or 10s")),
    };
    match number.parse::<f64>() {
        Ok(v) if v >= 0.0 && v.is_finite() && v * seconds < 1e12 => {
            Ok(std::time::Duration::from_secs_f64(v * seconds))
        }
        _ => Err(format!("'{text}' is not a duration like 1h, 30m or 10s")),
    }
}
