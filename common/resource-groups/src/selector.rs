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
    pub user_groups: Vec<String>,
    pub source: Option<String>,
    pub query_type: Option<String>,
    pub client_tags: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Selector {
    user: Option<Regex>,
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
        Ok(Selector {
            user: anchored("user", raw.user)?,
            user_group: anchored("userGroup", raw.user_group)?,
            source: anchored("source", raw.source)?,
            query_type: raw.query_type,
            client_tags: raw.client_tags.unwrap_or_default(),
            group: raw.group,
        })
    }

    /// The expanded group id if this selector matches `q`.
    pub fn select(&self, q: &QueryContext) -> Option<String> {
        let mut vars = BTreeMap::new();
        vars.insert("USER".to_string(), q.user.clone());
        if let Some(s) = &q.source {
            vars.insert("SOURCE".to_string(), s.clone());
        }
        if let Some(re) = &self.user {
            capture(re, &q.user, &mut vars)?;
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

/// Replaces `${NAME}` with its value; an unknown variable stays as written.
fn expand(template: &str, vars: &BTreeMap<String, String>) -> String {
    template_parts(template)
        .into_iter()
        .map(|part| match part {
            TemplatePart::Literal(l) => l.to_string(),
            // A '.' would split the value into two path segments.
            TemplatePart::Var(name) => match vars.get(name) {
                Some(v) => v.replace('.', "_"),
                None => format!("${{{name}}}"),
            },
        })
        .collect()
}
