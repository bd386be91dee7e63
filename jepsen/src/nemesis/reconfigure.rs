//! The reconfigure nemesis: under load, the resource groups change through
//! `POST /v1/admin/config` on the RMs, and the run's original file is put
//! back at the heal.
//!
//! The over-admission checkers compare against the run's original limits,
//! so a change only ever lowers `hardConcurrencyLimit` (to half, at least
//! 1, or to 1), may lower `maxQueued` (to half, at least 1), and, in
//! eventual groups only, may lower `maxStalenessMs` (to half, at least 50).
//! It never touches a group's consistency mode: a linearizable run stays
//! linearizable, and its verdict stays meaningful.

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;

/// The changes a reconfigure fault makes, by the draw.
pub const SHAPES: [&str; 3] = ["halve-limits", "halve-limits-and-queues", "limits-to-one"];

/// One field of one group, before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub group: String,
    pub field: &'static str,
    pub from: u64,
    pub to: u64,
}

/// A reconfigure fault's new file and what differs from the original.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub shape: &'static str,
    pub changes: Vec<Change>,
    /// The file to apply.
    #[serde(skip)]
    pub groups: Value,
}

/// The lowered configuration for draw `pick`, from the run's original
/// resource-groups text. Fails only on text that is not JSON.
pub fn plan(original: &str, pick: usize) -> Result<Plan> {
    let mut groups: Value =
        serde_json::from_str(original).context("the run's resource-groups.json")?;
    let shape = SHAPES[pick % SHAPES.len()];
    let mut changes = Vec::new();
    // Staleness is halved on every other draw, in eventual groups only.
    let staleness = (pick / SHAPES.len()).is_multiple_of(2);
    if let Some(roots) = groups.get_mut("rootGroups") {
        lower(roots, "", false, shape, staleness, &mut changes);
    }
    Ok(Plan {
        shape,
        changes,
        groups,
    })
}

/// Lowers every group under `list` (a JSON array of groups); `eventual`:
/// the parent's consistency is eventual (sub-groups inherit it).
fn lower(
    list: &mut Value,
    prefix: &str,
    eventual: bool,
    shape: &str,
    staleness: bool,
    changes: &mut Vec<Change>,
) {
    let Some(items) = list.as_array_mut() else {
        return;
    };
    for g in items {
        let Some(obj) = g.as_object_mut() else {
            continue;
        };
        let name = obj.get("name").and_then(Value::as_str).unwrap_or_default();
        let id = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}.{name}")
        };
        let mut set = |obj: &mut serde_json::Map<String, Value>,
                       field: &'static str,
                       to: &dyn Fn(u64) -> u64| {
            if let Some(from) = obj.get(field).and_then(Value::as_u64) {
                let to = to(from).min(from);
                if to != from {
                    obj.insert(field.to_string(), Value::from(to));
                    changes.push(Change {
                        group: id.clone(),
                        field,
                        from,
                        to,
                    });
                }
            }
        };
        match shape {
            "limits-to-one" => set(obj, "hardConcurrencyLimit", &|_| 1),
            _ => set(obj, "hardConcurrencyLimit", &|l| (l / 2).max(1)),
        }
        if shape == "halve-limits-and-queues" {
            set(obj, "maxQueued", &|q| (q / 2).max(1));
        }
        let mode = obj
            .get("consistency")
            .and_then(|c| c.get("mode"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let here_eventual = match mode.as_deref() {
            Some("eventual") => true,
            Some(_) => false,
            None => eventual,
        };
        if let Some(c) = obj.get_mut("consistency").and_then(Value::as_object_mut) {
            if staleness && here_eventual {
                set(c, "maxStalenessMs", &|ms| (ms / 2).max(50));
            }
        }
        if let Some(subs) = obj.get_mut("subGroups") {
            lower(subs, &id, here_eventual, shape, staleness, changes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test::limits_of;
    use serde_json::json;

    fn groups(consistency: Value) -> String {
        crate::workload::query_groups_json(&consistency)
    }

    #[test]
    fn limits_only_go_down_and_the_mode_never_changes() {
        for consistency in [
            json!({"mode": "linearizable"}),
            json!({"mode": "eventual", "maxStalenessMs": 1000}),
        ] {
            let original = groups(consistency.clone());
            let before = limits_of(&original).unwrap();
            for pick in 0..12 {
                let p = plan(&original, pick).unwrap();
                let text = p.groups.to_string();
                let after = limits_of(&text).unwrap();
                assert_eq!(
                    before.keys().collect::<Vec<_>>(),
                    after.keys().collect::<Vec<_>>()
                );
                for (g, l) in &after {
                    assert!(*l >= 1 && *l <= before[g], "{g}: {l} vs {}", before[g]);
                }
                assert!(after != before, "pick {pick} lowered nothing");
                assert_eq!(
                    p.groups["rootGroups"][0]["consistency"]["mode"], consistency["mode"],
                    "the mode changed"
                );
                // It parses as a configuration the RMs accept.
                common::resource_groups::parse(
                    &text,
                    &common::resource_groups::Consistency::Linearizable,
                )
                .unwrap_or_else(|e| panic!("{e}: {text}"));
                for c in &p.changes {
                    assert!(c.to < c.from, "{c:?}");
                    if c.field == "maxStalenessMs" {
                        assert_eq!(consistency["mode"], "eventual");
                    }
                }
            }
        }
        let eventual = groups(json!({"mode": "eventual", "maxStalenessMs": 1000}));
        let p = plan(&eventual, 0).unwrap();
        assert!(p
            .changes
            .iter()
            .any(|c| c.field == "maxStalenessMs" && c.to == 500));
        let p = plan(&eventual, 1).unwrap();
        assert!(p
            .changes
            .iter()
            .any(|c| c.field == "maxQueued" && c.group == "q.a" && c.to == 10));
        let p = plan(&eventual, 2).unwrap();
        assert!(p
            .changes
            .iter()
            .any(|c| c.field == "hardConcurrencyLimit" && c.group == "q" && c.to == 1));
    }

    #[test]
    fn odd_text_is_an_error_or_no_change_never_a_panic() {
        assert!(plan("not json", 0).is_err());
        assert!(plan("{}", 0).unwrap().changes.is_empty());
        let odd = r#"{"rootGroups":[1,{"name":5,"hardConcurrencyLimit":"x"},{"subGroups":{}}]}"#;
        assert!(plan(odd, 0).unwrap().changes.is_empty());
    }
}
