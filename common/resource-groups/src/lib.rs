//! Resource groups: Trino's `resource-groups.json`, unchanged, plus our
//! per-group `consistency` field.
//!
//! [`parse`] turns the file's text into a [`ResourceGroups`]: a validated
//! tree of [`GroupSpec`]s (plain data, safe to put in the Raft log) and the
//! compiled [`Selector`]s. Every error names the JSON path of the bad field,
//! e.g. `rootGroups[0].subGroups[2].hardConcurrencyLimit: must be >= 0`.
//! Fields this project does not enforce yet are accepted, and each is
//! reported once as a warning.
//!
//! Group ids are dot-separated paths of concrete names (`global.alice`). A
//! spec's name may be a template (`${USER}`, `bi-${toolname}`): it then
//! stands for every concrete name that fits, and those groups are created
//! on demand.

pub mod limits;
mod raw;
pub mod scheduling;
mod selector;
mod spec;

pub use limits::{CpuLimits, ResourceUsage, RunLimits};
pub use selector::{
    group_safe, QueryContext, ResourceEstimates, Selector, MAX_TEMPLATE_VALUE_BYTES,
};
pub use spec::{child_for, Consistency, GroupSpec, MemoryLimit, PerQueryLimits, SchedulingPolicy};

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct ResourceGroups {
    pub roots: Vec<GroupSpec>,
    pub selectors: Vec<Selector>,
    /// One line per field that is accepted but not enforced yet.
    pub warnings: Vec<String>,
}

/// What a selector chose: the concrete group id and the template it was
/// expanded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// A concrete id such as `global.adhoc.bi-tableau.alice`.
    pub id: String,
    /// The indices, root first, of the specs the selector's `group`
    /// names (see [`resolve_along`]).
    pub spec_path: Vec<usize>,
}

/// Every problem found, each naming its JSON path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid resource groups: {}", .0.join("; "))]
pub struct ConfigErrors(pub Vec<String>);

/// Parses and validates `resource-groups.json` text. `default_consistency`
/// applies to root groups that do not set their own (subgroups inherit).
pub fn parse(
    text: &str,
    default_consistency: &Consistency,
) -> Result<ResourceGroups, ConfigErrors> {
    let mut de = serde_json::Deserializer::from_str(text);
    let raw: raw::RawConfig = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        ConfigErrors(vec![if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        }])
    })?;
    raw.validate(default_consistency)
}

impl ResourceGroups {
    /// The chain of specs, root first, for a concrete group id such as
    /// `global.alice`, when the template that made it is not known; `None`
    /// if no spec fits. See [`child_for`] for which sibling wins.
    pub fn resolve(&self, group_id: &str) -> Option<Vec<&GroupSpec>> {
        spec::resolve(&self.roots, group_id)
    }

    /// The chain of specs of a selected group: those of the template the
    /// selector expanded (as Trino), not whichever sibling fits first.
    pub fn resolve_selected(&self, selected: &Selected) -> Option<Vec<&GroupSpec>> {
        spec::resolve_along(&self.roots, &selected.id, &selected.spec_path)
    }

    /// The group the first matching selector names, expanded for `query`.
    pub fn select(&self, query: &QueryContext) -> Option<Selected> {
        self.selectors.iter().find_map(|s| {
            s.select(query).map(|id| Selected {
                id,
                spec_path: s.spec_path().to_vec(),
            })
        })
    }
}

/// The ids of a group and its ancestors, root first:
/// `a.b.c` gives `[a, a.b, a.b.c]`. Counters of a group include its
/// descendants, so anything counted for `a.b.c` counts for each of these.
pub fn chain_ids(group_id: &str) -> Vec<String> {
    let mut out: Vec<String> = group_id
        .char_indices()
        .filter(|(_, c)| *c == '.')
        .map(|(i, _)| group_id[..i].to_string())
        .collect();
    out.push(group_id.to_string());
    out
}

/// Resolves `group_id` against a spec forest (as stored in the log),
/// without knowing the template that made it (see [`child_for`]).
pub fn resolve<'a>(roots: &'a [GroupSpec], group_id: &str) -> Option<Vec<&'a GroupSpec>> {
    spec::resolve(roots, group_id)
}

/// Resolves `group_id` along the specs at `spec_path` (a
/// [`Selected::spec_path`]); `None` unless each segment fits its spec.
pub fn resolve_along<'a>(
    roots: &'a [GroupSpec],
    group_id: &str,
    spec_path: &[usize],
) -> Option<Vec<&'a GroupSpec>> {
    spec::resolve_along(roots, group_id, spec_path)
}

/// Resolves `group_id` along the specs named `names`, root first (the
/// names or templates of a [`Selected`] group's specs); `None` if they do
/// not lead there.
pub fn resolve_named<'a>(
    roots: &'a [GroupSpec],
    group_id: &str,
    names: &[String],
) -> Option<Vec<&'a GroupSpec>> {
    spec::resolve_named(roots, group_id, names)
}

/// `d` as airlift's succinct `Duration` prints it: two decimals in the
/// largest unit it makes at least one of (`5.00m`, `30.00s`, `1.50h`,
/// `250.00ms`; zero is `0.00ns`), as Trino's error messages quote limits.
pub fn succinct_duration(d: std::time::Duration) -> String {
    const UNITS: [(&str, f64); 7] = [
        ("ns", 1.0),
        ("us", 1e3),
        ("ms", 1e6),
        ("s", 1e9),
        ("m", 60e9),
        ("h", 3_600e9),
        ("d", 86_400e9),
    ];
    let nanos = d.as_nanos() as f64;
    // As airlift: the last unit of which there is (about) one or more.
    let (unit, size) = UNITS
        .iter()
        .take_while(|(_, size)| nanos / size > 0.9999)
        .last()
        .copied()
        .unwrap_or(UNITS[0]);
    format!("{:.2}{unit}", nanos / size)
}

#[cfg(test)]
mod tests;
