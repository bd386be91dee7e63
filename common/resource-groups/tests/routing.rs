//! Every upstream resource-groups file, in its shape (fixtures/), loads or
//! fails as in Trino, and routes queries to the group Trino picks.
//!
//! Fixtures are named after the file they are modelled on:
//! `trino_*` after trinodb/trino's `docs/src/main/sphinx/admin/*.json`
//! and `plugin/trino-resource-group-managers/src/test/resources/`,
//! `presto_*` after prestodb/presto's `presto-resource-group-managers`
//! test resources and `presto-docs` example and selector fields. The
//! names and values are ours; the fields and structures are theirs.
//!
//! Expected answers follow Trino's routing: the first selector whose every
//! condition holds wins; patterns match the whole value; `${USER}`,
//! `${SOURCE}` and named captures of `user`/`source` (and the other user
//! patterns) expand in the group; a `source` pattern does not match a
//! query without a source; a resource-estimate range includes both
//! bounds and a missing estimate does not match.

use std::path::PathBuf;

use resource_groups::{
    parse, resolve, Consistency, QueryContext, ResourceEstimates, ResourceGroups,
};

/// One query, as the coordinator sees it. `estimate` is the
/// `X-Trino-Resource-Estimate` header's text ("" when absent).
#[derive(Clone, Copy)]
struct Q {
    user: &'static str,
    original_user: Option<&'static str>,
    authenticated_user: Option<&'static str>,
    user_groups: &'static [&'static str],
    source: Option<&'static str>,
    client_tags: &'static [&'static str],
    query_type: Option<&'static str>,
    estimate: &'static str,
}

const Q0: Q = Q {
    user: "alice",
    original_user: None,
    authenticated_user: None,
    user_groups: &[],
    source: None,
    client_tags: &[],
    query_type: Some("SELECT"),
    estimate: "",
};

impl Q {
    fn context(&self) -> QueryContext {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        QueryContext {
            user: self.user.into(),
            original_user: self.original_user.map(Into::into),
            authenticated_user: self.authenticated_user.map(Into::into),
            user_groups: strings(self.user_groups),
            source: self.source.map(Into::into),
            query_type: self.query_type.map(Into::into),
            client_tags: strings(self.client_tags),
            resource_estimates: ResourceEstimates::from_headers([self.estimate])
                .unwrap_or_else(|e| panic!("bad estimate in a test row: {e}")),
        }
    }
}

/// Where a query goes.
#[derive(Debug)]
enum Expect {
    /// The concrete group, and the name of the (leaf) spec it is
    /// configured from: the template the selector named.
    Leaf(&'static str, &'static str),
    /// A selector names a group with subgroups: Trino loads the file and
    /// fails the query ("not a leaf group").
    NotLeaf(&'static str),
    /// No selector matches: Trino rejects the query.
    NoMatch,
}
use Expect::*;

/// The fixtures of the checkout being tested. Cargo and nextest set
/// `CARGO_MANIFEST_DIR` when they run a test, so a binary built in another
/// clone (a shared target dir can reuse it) still reads this clone's files;
/// the compile-time path is the fallback for running the binary by hand.
fn fixtures_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("tests/fixtures")
}

fn load(file: &str) -> Result<ResourceGroups, String> {
    let path = fixtures_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    parse(&text, &Consistency::Linearizable).map_err(|e| e.to_string())
}

fn check_route(file: &str, q: &Q, expect: &Expect) -> Result<(), String> {
    let rg = load(file).map_err(|e| format!("{file} did not load: {e}"))?;
    let selected = rg.select(&q.context());
    let fail = |what: String| Err(format!("{file}, user {}: {what}", q.user));
    match (expect, selected) {
        (NoMatch, None) => Ok(()),
        (NoMatch, Some(s)) => fail(format!("expected no match, got {}", s.id)),
        (_, None) => fail(format!("expected {expect:?}, got no match")),
        (Leaf(id, spec), Some(s)) => {
            if s.id != *id {
                return fail(format!("expected {id}, got {}", s.id));
            }
            let Some(chain) = rg.resolve_selected(&s) else {
                return fail(format!("{id} does not resolve along {:?}", s.spec_path));
            };
            let leaf = chain.last().expect("a chain is never empty");
            if leaf.name != *spec || !leaf.is_leaf() {
                return fail(format!(
                    "{id} is configured from '{}', not leaf '{spec}'",
                    leaf.name
                ));
            }
            Ok(())
        }
        (NotLeaf(id), Some(s)) => {
            let leaf = rg
                .resolve_selected(&s)
                .and_then(|c| c.last().map(|l| l.is_leaf()));
            if s.id != *id || leaf != Some(false) {
                return fail(format!(
                    "expected non-leaf {id}, got {} (leaf: {leaf:?})",
                    s.id
                ));
            }
            Ok(())
        }
    }
}

const ROUTES: &[(&str, Q, Expect)] = &[
    // Trino's docs example.
    (
        "trino_docs_example.json",
        Q { user: "root", ..Q0 },
        Leaf("ops", "ops"),
    ),
    (
        "trino_docs_example.json",
        Q {
            original_user: Some("root"),
            ..Q0
        },
        Leaf("ops", "ops"),
    ),
    (
        "trino_docs_example.json",
        Q {
            authenticated_user: Some("root"),
            ..Q0
        },
        Leaf("ops", "ops"),
    ),
    (
        "trino_docs_example.json",
        Q {
            user_groups: &["staff", "operators"],
            ..Q0
        },
        Leaf("ops", "ops"),
    ),
    (
        "trino_docs_example.json",
        Q {
            source: Some("nightly-etl"),
            query_type: Some("DATA_DEFINITION"),
            ..Q0
        },
        Leaf("company.ddl", "ddl"),
    ),
    (
        "trino_docs_example.json",
        Q {
            source: Some("nightly-etl"),
            ..Q0
        },
        Leaf("company.etl.etl_alice", "etl_${USER}"),
    ),
    (
        "trino_docs_example.json",
        Q {
            user: "kim",
            source: Some("odbc#grafana"),
            client_tags: &["urgent", "fast"],
            ..Q0
        },
        Leaf("company.interactive.dash-grafana.kim", "${USER}"),
    ),
    (
        "trino_docs_example.json",
        Q {
            source: Some("odbc#grafana"),
            client_tags: &["fast"],
            ..Q0
        },
        Leaf("company.interactive.misc.alice", "${USER}"),
    ),
    // An empty capture expands to nothing, as in Trino.
    (
        "trino_docs_example.json",
        Q {
            source: Some("odbc#"),
            client_tags: &["urgent"],
            ..Q0
        },
        Leaf("company.interactive.dash-.alice", "${USER}"),
    ),
    // A user name with a '.' stays one segment.
    (
        "trino_docs_example.json",
        Q { user: "a.b", ..Q0 },
        Leaf("company.interactive.misc.a_b", "${USER}"),
    ),
    // The docs' scheduling-weight example, made a whole file.
    (
        "trino_schedule_weight.json",
        Q {
            source: Some("scheduler"),
            ..Q0
        },
        Leaf("all.batch", "batch"),
    ),
    (
        "trino_schedule_weight.json",
        Q {
            source: Some("scheduler-2"),
            ..Q0
        },
        Leaf("all.interactive", "interactive"),
    ),
    // Trino's resource_groups_config.json: its selector names a parent.
    ("trino_limits.json", Q0, NotLeaf("top")),
    // Trino's resource_groups_config_extract_variable.json.
    (
        "trino_extract_variable.json",
        Q {
            source: Some("team-data"),
            ..Q0
        },
        Leaf("top.data", "${team}"),
    ),
    (
        "trino_extract_variable.json",
        Q {
            user: "ann@acme.example",
            source: Some("cron.eu_west.42"),
            ..Q0
        },
        Leaf("top.acme:eu_west:42", "${org}:${zone}:${shard}"),
    ),
    // The id fits both sibling templates: the selector's template wins.
    (
        "trino_extract_variable.json",
        Q {
            source: Some("team-a:b:c"),
            ..Q0
        },
        Leaf("top.a:b:c", "${team}"),
    ),
    (
        "trino_extract_variable.json",
        Q {
            source: Some("cron.eu_west.42"),
            ..Q0
        },
        NoMatch,
    ),
    ("trino_extract_variable.json", Q0, NoMatch),
    // Trino's resource_groups_config_original_auth_user.json.
    (
        "trino_original_auth_user.json",
        Q {
            original_user: Some("svc-original"),
            ..Q0
        },
        Leaf("top.impersonated", "impersonated"),
    ),
    // Without impersonation the original user is the user.
    (
        "trino_original_auth_user.json",
        Q {
            user: "svc-original",
            ..Q0
        },
        Leaf("top.impersonated", "impersonated"),
    ),
    (
        "trino_original_auth_user.json",
        Q {
            authenticated_user: Some("svc-auth"),
            ..Q0
        },
        Leaf("top.authenticated", "authenticated"),
    ),
    // Without authentication the principal is the user.
    (
        "trino_original_auth_user.json",
        Q {
            user: "svc-auth",
            ..Q0
        },
        Leaf("top.authenticated", "authenticated"),
    ),
    ("trino_original_auth_user.json", Q0, NoMatch),
    // Trino's resource_groups_config_user_groups.json.
    (
        "trino_user_groups.json",
        Q {
            user_groups: &["analysts"],
            ..Q0
        },
        NotLeaf("top"),
    ),
    (
        "trino_user_groups.json",
        Q {
            user_groups: &["analysts-2"],
            ..Q0
        },
        NoMatch,
    ),
    ("trino_user_groups.json", Q0, NoMatch),
    // selectorResourceEstimate (Trino's SelectorSpec field).
    (
        "trino_resource_estimates.json",
        Q {
            estimate: "EXECUTION_TIME=5m",
            ..Q0
        },
        Leaf("est.short", "short"),
    ),
    (
        "trino_resource_estimates.json",
        Q {
            estimate: "EXECUTION_TIME=90s",
            ..Q0
        },
        Leaf("est.short", "short"),
    ),
    (
        "trino_resource_estimates.json",
        Q {
            estimate: "EXECUTION_TIME=1h,PEAK_MEMORY=8GB",
            ..Q0
        },
        Leaf("est.big", "big"),
    ),
    (
        "trino_resource_estimates.json",
        Q {
            estimate: "EXECUTION_TIME=1h, PEAK_MEMORY=7GB",
            ..Q0
        },
        Leaf("est.rest", "rest"),
    ),
    // No peak-memory estimate: a selector constraining it does not match.
    (
        "trino_resource_estimates.json",
        Q {
            estimate: "EXECUTION_TIME=1h",
            ..Q0
        },
        Leaf("est.rest", "rest"),
    ),
    (
        "trino_resource_estimates.json",
        Q {
            estimate: "CPU_TIME=30s",
            ..Q0
        },
        Leaf("est.cheap", "cheap"),
    ),
    (
        "trino_resource_estimates.json",
        Q {
            estimate: "CPU_TIME=999ms",
            ..Q0
        },
        Leaf("est.rest", "rest"),
    ),
    (
        "trino_resource_estimates.json",
        Q0,
        Leaf("est.rest", "rest"),
    ),
    // Presto's files.
    ("presto_config.json", Q0, NotLeaf("top")),
    ("presto_legacy.json", Q0, Leaf("top", "top")),
    (
        "presto_query_type.json",
        Q {
            user: "tester",
            ..Q0
        },
        Leaf("top.select", "select"),
    ),
    (
        "presto_query_type.json",
        Q {
            user: "tester",
            query_type: Some("EXPLAIN"),
            ..Q0
        },
        Leaf("top.explain", "explain"),
    ),
    (
        "presto_query_type.json",
        Q {
            user: "tester",
            query_type: Some("INSERT"),
            ..Q0
        },
        Leaf("top.insert", "insert"),
    ),
    (
        "presto_query_type.json",
        Q {
            user: "tester",
            query_type: Some("DELETE"),
            ..Q0
        },
        Leaf("top.delete", "delete"),
    ),
    (
        "presto_query_type.json",
        Q {
            user: "tester",
            query_type: Some("DESCRIBE"),
            ..Q0
        },
        Leaf("top.describe", "describe"),
    ),
    (
        "presto_query_type.json",
        Q {
            user: "tester",
            query_type: Some("DATA_DEFINITION"),
            ..Q0
        },
        Leaf("top.data_definition", "data_definition"),
    ),
    (
        "presto_query_type.json",
        Q {
            user: "tester",
            query_type: Some("MERGE"),
            ..Q0
        },
        Leaf("top.other", "other"),
    ),
    (
        "presto_query_type.json",
        Q {
            user: "tester",
            query_type: None,
            ..Q0
        },
        Leaf("top.other", "other"),
    ),
    ("presto_query_type.json", Q0, NoMatch),
    (
        "presto_docs_example.json",
        Q { user: "root", ..Q0 },
        Leaf("ops", "ops"),
    ),
    // Presto's example has no originalUser selector.
    (
        "presto_docs_example.json",
        Q {
            original_user: Some("root"),
            ..Q0
        },
        Leaf("company.interactive.misc.alice", "${USER}"),
    ),
    (
        "presto_docs_example.json",
        Q {
            source: Some("etl"),
            ..Q0
        },
        Leaf("company.etl.etl_alice", "etl_${USER}"),
    ),
    (
        "presto_docs_example.json",
        Q {
            source: Some("odbc#bi"),
            client_tags: &["urgent"],
            ..Q0
        },
        Leaf("company.interactive.dash-bi.alice", "${USER}"),
    ),
    // Presto's clientInfo, principal and schema are not matched yet: their
    // selectors match nothing (never more than they name).
    ("presto_selector_fields.json", Q0, Leaf("top.rest", "rest")),
    (
        "presto_selector_fields.json",
        Q {
            authenticated_user: Some("svc@EXAMPLE.COM"),
            ..Q0
        },
        Leaf("top.rest", "rest"),
    ),
    (
        "presto_selector_fields.json",
        Q {
            estimate: "EXECUTION_TIME=1h,CPU_TIME=2h,PEAK_MEMORY=1GB",
            ..Q0
        },
        Leaf("top.by_estimate", "by_estimate"),
    ),
    (
        "presto_selector_fields.json",
        Q {
            estimate: "EXECUTION_TIME=1h,CPU_TIME=2h",
            ..Q0
        },
        Leaf("top.rest", "rest"),
    ),
    // Sibling templates `${USER}` then `bi-${toolname}`: the id `global.bi-x`
    // is configured from the template of the selector that made it.
    (
        "templates_in_order.json",
        Q {
            source: Some("jdbc#x"),
            ..Q0
        },
        Leaf("global.bi-x", "bi-${toolname}"),
    ),
    (
        "templates_in_order.json",
        Q { user: "bi-x", ..Q0 },
        Leaf("global.bi-x", "${USER}"),
    ),
    (
        "templates_in_order.json",
        Q { user: "bob", ..Q0 },
        Leaf("global.bob", "${USER}"),
    ),
];

/// Files Trino (or Presto) refuses, and the JSON path (with a word of the
/// message) our error must carry.
const REFUSED: &[(&str, &str)] = &[
    // Not JSON: the docs show a fragment; a file of it fails to parse.
    ("trino_schedule_weight_snippet.json", "key must be a string"),
    (
        "trino_bad_node_group.json",
        "rootGroups[0].nodeGroup: 'batch nodes' is not a node group name",
    ),
    (
        "trino_bad_query_priority_subtree.json",
        "rootGroups[0].subGroups[0].subGroups[0].schedulingPolicy: must be query_priority",
    ),
    (
        "trino_bad_scheduling_weight.json",
        "rootGroups[0].schedulingWeight: must be >= 1",
    ),
    (
        "trino_bad_soft_memory_limit.json",
        "rootGroups[0].softMemoryLimit: '100.5%' is not a percentage",
    ),
    (
        "trino_bad_resource_estimate.json",
        "selectors[0].selectorResourceEstimate.peakMemory.max: 'half' is not a size",
    ),
    (
        "trino_bad_resource_estimate_field.json",
        "selectors[0].selectorResourceEstimate.wallTime: unknown field",
    ),
    (
        "presto_bad_extract_variable.json",
        "rootGroups[0].subGroups[0].name: '${org}:${zone$}:${shard}' has a '$'",
    ),
    (
        "presto_bad_group_id.json",
        "rootGroups[0].name: must be non-empty and contain no '.'",
    ),
    (
        "presto_legacy_hard_memory_limit.json",
        "rootGroups[0].hardMemoryLimit: unknown field",
    ),
    (
        "presto_bad_weighted_scheduling_policy.json",
        "rootGroups[0].subGroups[1].schedulingWeight: must be given for all sibling groups or none",
    ),
    (
        "presto_bad_query_type.json",
        "selectors[0].queryType: 'not_a_query_type' is not one of",
    ),
    (
        "presto_bad_root.json",
        "rootGroups[1].name: 'top' appears twice",
    ),
    (
        "presto_bad_sub_group.json",
        "rootGroups[0].subGroups[1].name: 'child' appears twice",
    ),
    (
        "presto_bad_selector.json",
        "selectors[3].group: 'x.y.z.Q' names no group",
    ),
    (
        "presto_unused_field.json",
        "rootGroups[0].maxBar: unknown field",
    ),
];

/// Files upstream loads that need group fields or group rules this
/// crate's group side does not have yet, with what Trino/Presto does.
/// `None`: loads (and its selector routes as the row says); `Some`: is
/// refused with that error.
const PENDING: &[(&str, Option<&str>, &str)] = &[
    ("trino_node_group.json", None, "nodeGroup"),
    (
        "presto_config_timeouts.json",
        None,
        "queuedTimeout, runningTimeout",
    ),
    (
        "presto_extract_variable_time_limits.json",
        None,
        "queuedTimeLimit, runningTimeLimit",
    ),
    (
        "presto_per_query_limits.json",
        None,
        "perQueryLimits, workersPerQueryLimit",
    ),
    (
        "presto_bad_query_priority_scheduling_policy.json",
        Some("rootGroups[0].subGroups[0].schedulingWeight"),
        "weights only under a weighted or weighted_fair parent",
    ),
];

#[test]
fn upstream_shaped_files_route_as_trino_does() {
    let failures: Vec<String> = ROUTES
        .iter()
        .filter_map(|(file, q, expect)| check_route(file, q, expect).err())
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn upstream_shaped_invalid_files_fail_with_a_json_path() {
    let failures: Vec<String> = REFUSED
        .iter()
        .filter_map(|(file, want)| match load(file) {
            Ok(_) => Some(format!("{file} loaded; expected '{want}'")),
            Err(e) if e.contains(want) => None,
            Err(e) => Some(format!("{file}: expected '{want}' in {e}")),
        })
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn upstream_shaped_files_that_need_group_fields_load_as_upstream() {
    let failures: Vec<String> = PENDING
        .iter()
        .filter_map(|(file, refused, why)| match (load(file), refused) {
            (Ok(_), None) => None,
            (Err(e), Some(want)) if e.contains(want) => None,
            (got, _) => Some(format!("{file} ({why}): got {:?}", got.map(|_| "loaded"))),
        })
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Every fixture is in one of the tables above.
#[test]
fn every_fixture_is_covered() {
    let dir = fixtures_dir();
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("fixtures dir") {
        let name = entry.expect("dir entry").file_name();
        let name = name.to_string_lossy();
        let covered = ROUTES.iter().any(|(f, _, _)| *f == name)
            || REFUSED.iter().any(|(f, _)| *f == name)
            || PENDING.iter().any(|(f, _, _)| *f == name);
        if !covered {
            missing.push(name.to_string());
        }
    }
    assert!(missing.is_empty(), "fixtures in no table: {missing:?}");
}

/// Presto's selector fields we cannot match are reported once each.
#[test]
fn unmatched_presto_selector_fields_are_reported_once_each() {
    let rg = load("presto_selector_fields.json").unwrap_or_else(|e| panic!("{e}"));
    for field in ["clientInfo", "principal", "schema"] {
        let lines: Vec<&String> = rg
            .warnings
            .iter()
            .filter(|w| w.contains(&format!(".{field}: {field} is accepted but not matched")))
            .collect();
        assert_eq!(lines.len(), 1, "{field}: {:?}", rg.warnings);
    }
    assert!(
        !rg.warnings
            .iter()
            .any(|w| w.contains("selectorResourceEstimate")),
        "estimates are matched now: {:?}",
        rg.warnings
    );
}

/// The RMs resolve an id alone (no selector at hand): a literal name
/// wins, then the template with the most literal text, then file order.
#[test]
fn an_id_alone_resolves_to_the_most_specific_template() {
    let rg = load("templates_in_order.json").unwrap_or_else(|e| panic!("{e}"));
    let leaf = |id: &str| resolve(&rg.roots, id).and_then(|c| c.last().map(|s| s.name.clone()));
    assert_eq!(leaf("global.bi-x").as_deref(), Some("bi-${toolname}"));
    assert_eq!(leaf("global.bob").as_deref(), Some("${USER}"));
    let rg = load("trino_extract_variable.json").unwrap_or_else(|e| panic!("{e}"));
    let leaf = |id: &str| resolve(&rg.roots, id).and_then(|c| c.last().map(|s| s.name.clone()));
    assert_eq!(leaf("top.data").as_deref(), Some("${team}"));
    // Also fits ${team}; its selector would have named ${team} (see
    // ROUTES): without it the more literal template is taken.
    assert_eq!(
        leaf("top.a:b:c").as_deref(),
        Some("${org}:${zone}:${shard}")
    );
}
