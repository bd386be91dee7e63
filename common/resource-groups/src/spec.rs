//! The validated group tree: plain data (it travels in the Raft log).

use serde::{Deserialize, Serialize};

use super::limits::CpuLimits;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Consistency {
    /// Admission is a conditional command in the Raft log.
    Linearizable,
    /// Coordinators admit on an aggregated view no staler than this.
    Eventual { max_staleness_ms: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SchedulingPolicy {
    /// Subgroups take turns; queries leave a queue first in, first out.
    Fair,
    /// The subgroup furthest below its weighted share of running queries.
    WeightedFair,
    /// Subgroups in proportion to their weights (deterministic smooth
    /// weighted round-robin, not random: the state machine is replayable).
    Weighted,
    /// Highest `query_priority` first, across all subgroups.
    QueryPriority,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum MemoryLimit {
    Bytes(u64),
    /// Percent of the cluster's memory.
    Percent(f64),
}

/// Presto's `perQueryLimits` of a group: each query of the group (not
/// the group's total) is killed past them, with Trino's error names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerQueryLimits {
    /// `executionTimeLimit` (or Presto's `runningTimeLimit`): from
    /// admission to the end.
    pub execution_time_ms: Option<u64>,
    /// `totalMemoryLimit`: the query's memory over the cluster.
    pub total_memory_bytes: Option<u64>,
    /// `cpuTimeLimit`: the query's CPU time over the cluster.
    pub cpu_time_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupSpec {
    /// A literal name or a template such as `${USER}`.
    pub name: String,
    pub hard_concurrency_limit: u32,
    pub max_queued: u32,
    pub soft_concurrency_limit: Option<u32>,
    pub soft_memory_limit: Option<MemoryLimit>,
    /// `hardCpuLimit`, `softCpuLimit` and the file's `cpuQuotaPeriod`.
    pub cpu_limits: Option<CpuLimits>,
    /// Presto's `perQueryLimits`: a query over one of them is killed.
    pub per_query_limits: PerQueryLimits,
    /// Presto's `queuedTimeLimit`: a query of the group queued longer
    /// fails.
    pub queued_time_limit_ms: Option<u64>,
    /// Per-group metrics on the RMs' `/metrics` (Trino's JMX export).
    pub jmx_export: bool,
    pub scheduling_policy: SchedulingPolicy,
    pub scheduling_weight: u32,
    /// Resolved: the group's own, else its parent's, else the default.
    pub consistency: Consistency,
    pub sub_groups: Vec<GroupSpec>,
}

impl GroupSpec {
    pub fn is_template(&self) -> bool {
        self.name.contains("${")
    }

    pub fn is_leaf(&self) -> bool {
        self.sub_groups.is_empty()
    }

    /// Whether the concrete name `segment` fits this spec's name.
    pub fn fits(&self, segment: &str) -> bool {
        template_fits(&self.name, segment)
    }
}

/// `${...}` stands for any run of characters other than `.` (empty too:
/// Trino expands an absent source or an empty capture to nothing), and
/// the whole segment must be non-empty.
pub fn template_fits(template: &str, segment: &str) -> bool {
    if segment.is_empty() || segment.contains('.') {
        return false;
    }
    let parts = literal_parts(template);
    if parts.len() == 1 {
        return template == segment;
    }
    match_parts(&parts, segment)
}

/// Trino's rule for a name: every `$`, `{` and `}` belongs to a variable
/// `${name}`, whose name is a letter then letters or digits. The problem,
/// if any.
pub(super) fn template_name_error(name: &str) -> Option<String> {
    let mut rest = name;
    while let Some(at) = rest.find(['$', '{', '}']) {
        let tail = &rest[at..];
        let variable = tail
            .strip_prefix("${")
            .and_then(|t| t.split_once('}'))
            .filter(|(var, _)| {
                var.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                    && var.chars().all(|c| c.is_ascii_alphanumeric())
            });
        match variable {
            Some((_, after)) => rest = after,
            None => {
                return Some(format!(
                    "'{name}' has a '$', '{{' or '}}' outside a ${{name}} variable (names are a letter, then letters or digits)"
                ))
            }
        }
    }
    None
}

/// How many characters of a template are literal: among sibling
/// templates that fit a name, the one with more literal text is the more
/// specific (`bi-${tool}` over `${USER}` for `bi-x`).
fn literal_len(template: &str) -> usize {
    literal_parts(template).iter().map(|l| l.len()).sum()
}

/// The spec among `level` (siblings) that the concrete name `segment`
/// belongs to, when nothing says which template made it: a literal name
/// equal to it, else the fitting template with the most literal text,
/// else (a tie) the first in file order.
pub fn child_for<'a>(level: &'a [GroupSpec], segment: &str) -> Option<&'a GroupSpec> {
    if let Some(literal) = level.iter().find(|s| !s.is_template() && s.name == segment) {
        return Some(literal);
    }
    let mut best: Option<&GroupSpec> = None;
    for spec in level.iter().filter(|s| s.is_template() && s.fits(segment)) {
        if best.is_none_or(|b| literal_len(&spec.name) > literal_len(&b.name)) {
            best = Some(spec);
        }
    }
    best
}

/// A template, split: `a${x}b` is `[Literal("a"), Var("x"), Literal("b")]`.
/// The one place that reads `${...}` (matching and expansion both use it);
/// an unclosed `${` is literal text.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum TemplatePart<'a> {
    Literal(&'a str),
    Var(&'a str),
}

pub(super) fn template_parts(template: &str) -> Vec<TemplatePart<'_>> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        if start > 0 {
            parts.push(TemplatePart::Literal(&rest[..start]));
        }
        parts.push(TemplatePart::Var(&rest[start + 2..start + len]));
        rest = &rest[start + len + 1..];
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Literal(rest));
    }
    parts
}

/// The literal text around each `${...}`: `a${x}b${y}` gives `[a, b, ""]`.
fn literal_parts(template: &str) -> Vec<&str> {
    let mut out = vec![""];
    for part in template_parts(template) {
        match part {
            TemplatePart::Literal(l) => *out.last_mut().expect("never empty") = l,
            TemplatePart::Var(_) => out.push(""),
        }
    }
    out
}

/// `s` is `parts[0]`, then any characters, then the other parts (with a
/// variable between each pair).
fn match_parts(parts: &[&str], s: &str) -> bool {
    let Some(rest) = s.strip_prefix(parts[0]) else {
        return false;
    };
    if parts.len() == 1 {
        return rest.is_empty();
    }
    (0..=rest.len())
        .filter(|n| rest.is_char_boundary(*n))
        .any(|n| match_parts(&parts[1..], &rest[n..]))
}

/// The chain of specs for a concrete id, each segment by [`child_for`].
pub(super) fn resolve<'a>(roots: &'a [GroupSpec], group_id: &str) -> Option<Vec<&'a GroupSpec>> {
    let mut chain = Vec::new();
    let mut level = roots;
    for segment in group_id.split('.') {
        let spec = child_for(level, segment)?;
        chain.push(spec);
        level = &spec.sub_groups;
    }
    (!chain.is_empty()).then_some(chain)
}

/// The chain of specs at `spec_path` (indices, root first), if `group_id`
/// has one segment per spec and each fits its spec: the template a
/// selector expanded the id from, as Trino configures a group from the
/// selector's template rather than from the id alone.
pub(super) fn resolve_along<'a>(
    roots: &'a [GroupSpec],
    group_id: &str,
    spec_path: &[usize],
) -> Option<Vec<&'a GroupSpec>> {
    resolve_by(roots, group_id, spec_path, |level, index, _| {
        level.get(*index)
    })
}

/// The chain for `group_id` along the specs named `names` (root first, a
/// spec's name being its literal name or template, e.g. `bi-${toolname}`),
/// each fitting its segment: how the RMs follow the template the selector
/// expanded. `None` if the names do not lead there (say, a newer
/// configuration renamed a spec).
pub(super) fn resolve_named<'a>(
    roots: &'a [GroupSpec],
    group_id: &str,
    names: &[String],
) -> Option<Vec<&'a GroupSpec>> {
    resolve_by(roots, group_id, names, |level, name, segment| {
        level.iter().find(|s| s.name == *name && s.fits(segment))
    })
}

/// The chain for `group_id`, one key per segment: `pick` chooses a spec of
/// each level by its key, and it must fit the segment.
fn resolve_by<'a, K>(
    roots: &'a [GroupSpec],
    group_id: &str,
    keys: &[K],
    pick: impl Fn(&'a [GroupSpec], &K, &str) -> Option<&'a GroupSpec>,
) -> Option<Vec<&'a GroupSpec>> {
    let segments: Vec<&str> = group_id.split('.').collect();
    if segments.len() != keys.len() {
        return None;
    }
    let mut chain = Vec::new();
    let mut level = roots;
    for (segment, key) in segments.into_iter().zip(keys) {
        let spec = pick(level, key, segment).filter(|s| s.fits(segment))?;
        chain.push(spec);
        level = &spec.sub_groups;
    }
    (!chain.is_empty()).then_some(chain)
}
