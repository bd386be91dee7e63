//! Selectors: the first whose every given condition matches picks the group.
//! Regexes match the whole value (as Java's `matches()` in Trino). Named
//! captures of `user` and `source` become template variables, along with
//! `${USER}` and `${SOURCE}`.

use std::collections::BTreeMap;

use regex::Regex;

use super::raw::RawSelector;
use super::spec::{template_parts, TemplatePart};

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
    pub source: Option<String>,
    pub query_type: Option<String>,
    pub client_tags: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Selector {
    user: Option<Regex>,
    original_user: Option<Regex>,
    authenticated_user: Option<Regex>,
    /// Matches no query: clients' resource estimates are not read yet.
    needs_estimates: bool,
    user_group: Option<Regex>,
    source: Option<Regex>,
    query_type: Option<String>,
    client_tags: Vec<String>,
    /// Group path template, e.g. `global.${USER}`.
    group: String,
}

fn anchored(
    field: &'static str,
    pattern: Option<String>,
) -> Result<Option<Regex>, (&'static str, String)> {
    pattern
        .map(|p| {
            Regex::new(&format!("^(?:{p})$")).map_err(|e| (field, format!("invalid regex: {e}")))
        })
        .transpose()
}

impl Selector {
    pub(super) fn compile(raw: RawSelector) -> Result<Selector, (&'static str, String)> {
        let selector = Selector {
            original_user: anchored("originalUser", raw.original_user)?,
            authenticated_user: anchored("authenticatedUser", raw.authenticated_user)?,
            needs_estimates: raw.selector_resource_estimate.is_some(),
            user: anchored("user", raw.user)?,
            user_group: anchored("userGroup", raw.user_group)?,
            source: anchored("source", raw.source)?,
            query_type: raw.query_type,
            client_tags: raw.client_tags.unwrap_or_default(),
            group: raw.group,
        };
        // As Trino: a template variable must be USER, SOURCE or a named
        // capture of this selector's patterns.
        let mut known: Vec<&str> = vec!["USER", "SOURCE"];
        for re in [
            &selector.user,
            &selector.source,
            &selector.original_user,
            &selector.authenticated_user,
        ]
        .into_iter()
        .flatten()
        {
            known.extend(re.capture_names().flatten());
        }
        for part in template_parts(&selector.group) {
            if let TemplatePart::Var(name) = part {
                if !known.contains(&name) {
                    return Err((
                        "group",
                        format!(
                            "'${{{name}}}' is not defined: use USER, SOURCE or a named capture of this selector's patterns"
                        ),
                    ));
                }
            }
        }
        Ok(selector)
    }

    /// The expanded group id if this selector matches `q`.
    pub fn select(&self, q: &QueryContext) -> Option<String> {
        let mut vars = BTreeMap::new();
        vars.insert("USER".to_string(), q.user.clone());
        if let Some(s) = &q.source {
            vars.insert("SOURCE".to_string(), s.clone());
        }
        if self.needs_estimates {
            return None;
        }
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
            capture(re, q.source.as_deref().unwrap_or(""), &mut vars)?;
        }
        if let Some(t) = &self.query_type {
            if q.query_type.as_deref() != Some(t.as_str()) {
                return None;
            }
        }
        if !self.client_tags.iter().all(|t| q.client_tags.contains(t)) {
            return None;
        }
        Some(expand(&self.group, &vars))
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

/// Replaces `${NAME}` with its value (see [`group_safe`]); an unknown
/// variable stays as written.
fn expand(template: &str, vars: &BTreeMap<String, String>) -> String {
    template_parts(template)
        .into_iter()
        .map(|part| match part {
            TemplatePart::Literal(l) => l.to_string(),
            TemplatePart::Var(name) => match vars.get(name) {
                Some(v) => group_safe(v),
                None => format!("${{{name}}}"),
            },
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
