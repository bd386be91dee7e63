//! Selectors: the first whose every given condition matches picks the group.
//! Regexes match the whole value (as Java's `matches()` in Trino). Named
//! captures of `user` and `source` become template variables, along with
//! `${USER}` and `${SOURCE}`.

use std::collections::BTreeMap;
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::raw::{parse_duration, parse_memory_limit, RawRange, RawResourceEstimate, RawSelector};
use super::spec::{template_parts, MemoryLimit, TemplatePart};

/// What a coordinator knows about a query when it picks its group.
#[derive(Debug, Clone, Default)]
pub struct QueryContext {
    pub user: String,
    /// The user before impersonation (`X-Trino-Original-User`); `None`:
    /// the user.
    pub original_user: Option<String>,
    /// The authenticated principal; `None` (no authentication yet): the
    /// user.
    pub authenticated_user: Option<String>,
    pub user_groups: Vec<String>,
    /// `None`: the client sent no source; a `source` selector then does
    /// not match (as Trino), and `${SOURCE}` expands to nothing.
    pub source: Option<String>,
    pub query_type: Option<String>,
    pub client_tags: Vec<String>,
    /// The client's `X-Trino-Resource-Estimate`.
    pub resource_estimates: ResourceEstimates,
}

/// A client's estimates of its query (Trino's `ResourceEstimates`); each
/// is optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceEstimates {
    pub execution_time_ms: Option<u64>,
    pub cpu_time_ms: Option<u64>,
    pub peak_memory_bytes: Option<u64>,
}

impl ResourceEstimates {
    /// Reads the values of `X-Trino-Resource-Estimate` headers: each a
    /// comma-separated list of `NAME=VALUE`, names `EXECUTION_TIME`,
    /// `CPU_TIME` (durations like `1h`, `10s`) and `PEAK_MEMORY` (a size
    /// like `4GB`), in any case. A later value of a name replaces an
    /// earlier one. The error says which item is wrong.
    pub fn from_headers<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut out = ResourceEstimates::default();
        for item in values
            .into_iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|i| !i.is_empty())
        {
            let Some((name, value)) = item.split_once('=') else {
                return Err(format!("'{item}' is not NAME=VALUE"));
            };
            let (name, value) = (name.trim(), value.trim());
            let bad = |e: String| format!("{name}: {e}");
            match name.to_ascii_uppercase().as_str() {
                "EXECUTION_TIME" => {
                    out.execution_time_ms = Some(millis(parse_duration(value).map_err(bad)?))
                }
                "CPU_TIME" => out.cpu_time_ms = Some(millis(parse_duration(value).map_err(bad)?)),
                "PEAK_MEMORY" => out.peak_memory_bytes = Some(absolute_size(value).map_err(bad)?),
                _ => {
                    return Err(format!(
                        "unsupported resource name '{name}': use EXECUTION_TIME, CPU_TIME or PEAK_MEMORY"
                    ))
                }
            }
        }
        Ok(out)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A data size such as `4GB`; a percentage is not a size here.
fn absolute_size(text: &str) -> Result<u64, String> {
    match parse_memory_limit(text)? {
        MemoryLimit::Bytes(b) => Ok(b),
        MemoryLimit::Percent(_) => Err(format!("'{text}' is not an absolute size like 4GB")),
    }
}

/// `min <= value <= max`, each bound optional. Trino's class comment says
/// the upper bound is exclusive, but its check includes it; we follow
/// the check, since that is how Trino routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range<T> {
    min: Option<T>,
    max: Option<T>,
}

impl<T: PartialOrd + Copy> Range<T> {
    fn contains(&self, value: T) -> bool {
        self.min.is_none_or(|m| m <= value) && self.max.is_none_or(|m| value <= m)
    }
}

/// A selector's `selectorResourceEstimate`, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct EstimateRanges {
    execution_time: Option<Range<Duration>>,
    cpu_time: Option<Range<Duration>>,
    peak_memory: Option<Range<u64>>,
}

impl EstimateRanges {
    fn compile(raw: RawResourceEstimate) -> Result<Self, (String, String)> {
        fn range<T>(
            field: &str,
            raw: Option<RawRange>,
            parse: impl Fn(&str) -> Result<T, String>,
        ) -> Result<Option<Range<T>>, (String, String)> {
            let Some(raw) = raw else { return Ok(None) };
            let bound = |name: &str, text: Option<String>| {
                text.map(|t| parse(&t))
                    .transpose()
                    .map_err(|e| (format!("selectorResourceEstimate.{field}.{name}"), e))
            };
            Ok(Some(Range {
                min: bound("min", raw.min)?,
                max: bound("max", raw.max)?,
            }))
        }
        Ok(EstimateRanges {
            execution_time: range("executionTime", raw.execution_time, parse_duration)?,
            cpu_time: range("cpuTime", raw.cpu_time, parse_duration)?,
            peak_memory: range("peakMemory", raw.peak_memory, absolute_size)?,
        })
    }

    /// As Trino: a constrained resource the client gave no estimate of
    /// does not match.
    fn matches(&self, e: &ResourceEstimates) -> bool {
        fn check<T: PartialOrd + Copy>(range: &Option<Range<T>>, value: Option<T>) -> bool {
            match (range, value) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(r), Some(v)) => r.contains(v),
            }
        }
        check(
            &self.execution_time,
            e.execution_time_ms.map(Duration::from_millis),
        ) && check(&self.cpu_time, e.cpu_time_ms.map(Duration::from_millis))
            && check(&self.peak_memory, e.peak_memory_bytes)
    }
}

#[derive(Debug, Clone)]
pub struct Selector {
    user: Option<Regex>,
    original_user: Option<Regex>,
    authenticated_user: Option<Regex>,
    resource_estimate: Option<EstimateRanges>,
    /// A field we accept but cannot match yet (Presto's `clientInfo`,
    /// `principal`, `schema`): the selector matches no query rather than
    /// more queries than it names.
    unmatchable: bool,
    user_group: Option<Regex>,
    source: Option<Regex>,
    query_type: Option<String>,
    client_tags: Vec<String>,
    /// Group path template, e.g. `global.${USER}`.
    group: String,
    /// Indices, root first, of the specs `group` names (its template).
    spec_path: Vec<usize>,
}

fn anchored(field: &str, pattern: Option<String>) -> Result<Option<Regex>, (String, String)> {
    pattern
        .map(|p| {
            Regex::new(&format!("^(?:{p})$"))
                .map_err(|e| (field.to_string(), format!("invalid regex: {e}")))
        })
        .transpose()
}

impl Selector {
    /// `spec_path`: where `raw.group` is in the tree (see
    /// [`Selector::spec_path`]). Errors are (path within the selector,
    /// message).
    pub(super) fn compile(
        raw: RawSelector,
        spec_path: Vec<usize>,
    ) -> Result<Selector, (String, String)> {
        // Compiled only to check them: nothing is matched against them.
        for (field, pattern) in [
            ("clientInfo", &raw.client_info),
            ("principal", &raw.principal),
            ("schema", &raw.schema),
        ] {
            anchored(field, pattern.clone())?;
        }
        let selector = Selector {
            unmatchable: raw.client_info.is_some()
                || raw.principal.is_some()
                || raw.schema.is_some(),
            original_user: anchored("originalUser", raw.original_user)?,
            authenticated_user: anchored("authenticatedUser", raw.authenticated_user)?,
            resource_estimate: raw
                .selector_resource_estimate
                .map(EstimateRanges::compile)
                .transpose()?,
            user: anchored("user", raw.user)?,
            user_group: anchored("userGroup", raw.user_group)?,
            source: anchored("source", raw.source)?,
            query_type: raw.query_type,
            client_tags: raw.client_tags.unwrap_or_default(),
            group: raw.group,
            spec_path,
        };
        // As Trino: a template variable must be USER, SOURCE or a named
        // capture of this selector's patterns, and each is defined once.
        let mut known: Vec<&str> = vec!["USER", "SOURCE"];
        for (field, re) in [
            ("user", &selector.user),
            ("originalUser", &selector.original_user),
            ("authenticatedUser", &selector.authenticated_user),
            ("source", &selector.source),
        ] {
            for name in re.iter().flat_map(|r| r.capture_names().flatten()) {
                if known.contains(&name) {
                    return Err((
                        field.to_string(),
                        format!("'${{{name}}}' is defined twice (USER and SOURCE are predefined)"),
                    ));
                }
                known.push(name);
            }
        }
        for part in template_parts(&selector.group) {
            if let TemplatePart::Var(name) = part {
                if !known.contains(&name) {
                    return Err((
                        "group".to_string(),
                        format!(
                            "'${{{name}}}' is not defined: use USER, SOURCE or a named capture of this selector's patterns"
                        ),
                    ));
                }
            }
        }
        Ok(selector)
    }

    /// The indices, root first, of the specs this selector's `group`
    /// names: the template its ids are expanded from.
    pub fn spec_path(&self) -> &[usize] {
        &self.spec_path
    }

    /// The expanded group id if this selector matches `q`.
    pub fn select(&self, q: &QueryContext) -> Option<String> {
        if self.unmatchable {
            return None;
        }
        let mut vars = BTreeMap::new();
        vars.insert("USER".to_string(), q.user.clone());
        // As Trino: an absent source expands to nothing.
        vars.insert("SOURCE".to_string(), q.source.clone().unwrap_or_default());
        if let Some(re) = &self.user {
            capture(re, &q.user, &mut vars)?;
        }
        if let Some(re) = &self.original_user {
            capture(re, q.original_user.as_deref().unwrap_or(&q.user), &mut vars)?;
        }
        if let Some(re) = &self.authenticated_user {
            capture(
                re,
                q.authenticated_user.as_deref().unwrap_or(&q.user),
                &mut vars,
            )?;
        }
        if let Some(re) = &self.user_group {
            q.user_groups.iter().find(|g| re.is_match(g))?;
        }
        if let Some(re) = &self.source {
            // As Trino: a query without a source matches no source pattern.
            capture(re, q.source.as_deref()?, &mut vars)?;
        }
        if let Some(t) = &self.query_type {
            if q.query_type.as_deref() != Some(t.as_str()) {
                return None;
            }
        }
        if !self.client_tags.iter().all(|t| q.client_tags.contains(t)) {
            return None;
        }
        if let Some(ranges) = &self.resource_estimate {
            if !ranges.matches(&q.resource_estimates) {
                return None;
            }
        }
        expand(&self.group, &vars)
    }
}

fn capture(re: &Regex, value: &str, vars: &mut BTreeMap<String, String>) -> Option<()> {
    let caps = re.captures(value)?;
    for name in re.capture_names().flatten() {
        if let Some(m) = caps.name(name) {
            vars.insert(name.to_string(), m.as_str().to_string());
        }
    }
    Some(())
}

/// Replaces `${NAME}` with its value (see [`group_safe`]). `None` if a
/// capture took no part in the match: Trino fails such a query; here the
/// selector does not match.
fn expand(template: &str, vars: &BTreeMap<String, String>) -> Option<String> {
    template_parts(template)
        .into_iter()
        .map(|part| match part {
            TemplatePart::Literal(l) => Some(l.to_string()),
            TemplatePart::Var(name) => vars.get(name).map(|v| group_safe(v)),
        })
        .collect()
}

/// The most bytes a variable's value takes in a group id.
pub const MAX_TEMPLATE_VALUE_BYTES: usize = 64;

/// A client-chosen value (user, source, a capture) made fit for a group
/// id, which the RMs take only as 1 to 256 printable characters: a '.'
/// would split it into two path segments and a control character makes
/// the id unprintable, so both become '_'; a value longer than
/// [`MAX_TEMPLATE_VALUE_BYTES`] keeps its start and ends in `~` and a hash
/// of the whole value, so two long names stay two groups. Deterministic:
/// every coordinator makes the same id of the same value.
pub fn group_safe(value: &str) -> String {
    let clean: String = value
        .chars()
        .map(|c| if c == '.' || c.is_control() { '_' } else { c })
        .collect();
    if clean.len() <= MAX_TEMPLATE_VALUE_BYTES {
        return clean;
    }
    let hash = format!("~{:016x}", fnv1a(value.as_bytes()));
    let room = MAX_TEMPLATE_VALUE_BYTES - hash.len();
    let mut out = String::with_capacity(MAX_TEMPLATE_VALUE_BYTES);
    for c in clean.chars() {
        if out.len() + c.len_utf8() > room {
            break;
        }
        out.push(c);
    }
    out + &hash
}

/// FNV-1a, 64 bits: stable across processes and builds (std's hashers
/// promise neither).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
