use super::*;

/// The id alone, for tests that check only where a query goes.
trait SelectId {
    fn select_id(&self, q: &QueryContext) -> Option<String>;
}

impl SelectId for ResourceGroups {
    fn select_id(&self, q: &QueryContext) -> Option<String> {
        self.select(q).map(|s| s.id)
    }
}

const EXAMPLE: &str = include_str!("../../../docs/examples/resource-groups.json");
const DEFAULT: Consistency = Consistency::Linearizable;

fn ctx(user: &str, source: Option<&str>, tags: &[&str]) -> QueryContext {
    QueryContext {
        user: user.into(),
        source: source.map(Into::into),
        client_tags: tags.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    }
}

#[test]
fn the_trino_shaped_example_loads_selects_and_resolves() {
    let rg = parse(EXAMPLE, &DEFAULT).unwrap();
    assert_eq!(rg.roots.len(), 2);
    assert_eq!(
        rg.select_id(&ctx("bob", None, &[])).as_deref(),
        Some("admin")
    );
    assert_eq!(
        rg.select_id(&ctx("alice", Some("jdbc#tableau"), &["hipri"]))
            .as_deref(),
        Some("global.adhoc.bi-tableau.alice")
    );
    assert_eq!(
        rg.select_id(&ctx("alice", Some("jdbc#tableau"), &[]))
            .as_deref(),
        Some("global.adhoc.other.alice"),
        "clientTags must all be present"
    );
    assert_eq!(
        rg.select_id(&ctx("carol", Some("nightly-pipeline-7"), &[]))
            .as_deref(),
        Some("global.pipeline.pipeline_carol")
    );
    let mut ddl = ctx("carol", Some("x-pipeline"), &[]);
    ddl.query_type = Some("DATA_DEFINITION".into());
    assert_eq!(
        rg.select_id(&ddl).as_deref(),
        Some("global.data_definition")
    );

    let chain = rg.resolve("global.adhoc.bi-tableau.alice").unwrap();
    let names: Vec<&str> = chain.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["global", "adhoc", "bi-${toolname}", "${USER}"]);
    // Consistency is inherited down the tree; the eventual subtree keeps its bound.
    assert_eq!(
        chain[3].consistency,
        Consistency::Eventual {
            max_staleness_ms: 1000
        }
    );
    assert_eq!(
        rg.resolve("admin").unwrap()[0].scheduling_policy,
        SchedulingPolicy::QueryPriority
    );
    assert!(rg.resolve("global.nope").is_none());
    assert!(
        rg.resolve("global.pipeline.other_x").is_none(),
        "pipeline_${{USER}} needs the prefix"
    );
}

/// `jmxExport` is enforced now (per-group metrics on the RMs): parsed
/// into the spec, default off, and no longer reported at load.
#[test]
fn jmx_export_is_parsed_and_not_reported() {
    let rg = parse(EXAMPLE, &DEFAULT).unwrap();
    assert!(
        !rg.warnings.iter().any(|w| w.contains("jmxExport")),
        "{:?}",
        rg.warnings
    );
    let leaf = |id: &str| rg.resolve(id).and_then(|c| c.last().map(|s| s.jmx_export));
    assert_eq!(leaf("global"), Some(true));
    assert_eq!(leaf("global.pipeline"), Some(true));
    assert_eq!(leaf("admin"), Some(true));
    assert_eq!(
        leaf("global.pipeline.pipeline_alice"),
        Some(false),
        "not inherited: each group says"
    );
}

fn errors(text: &str) -> Vec<String> {
    parse(text, &DEFAULT).unwrap_err().0
}

#[test]
fn errors_name_the_json_path() {
    let bad_limit = r#"{"rootGroups":[{"name":"a","hardConcurrencyLimit":1,"maxQueued":1,"subGroups":[
        {"name":"b","hardConcurrencyLimit":1,"maxQueued":1},
        {"name":"c","hardConcurrencyLimit":1,"maxQueued":1},
        {"name":"d","hardConcurrencyLimit":-1,"maxQueued":1}]}]}"#;
    assert_eq!(
        errors(bad_limit),
        ["rootGroups[0].subGroups[2].hardConcurrencyLimit: must be >= 0"]
    );

    let wrong_type = r#"{"rootGroups":[{"name":"a","hardConcurrencyLimit":"ten","maxQueued":1}]}"#;
    let e = errors(wrong_type);
    assert!(
        e[0].starts_with("rootGroups[0].hardConcurrencyLimit: invalid type"),
        "{e:?}"
    );

    let unknown =
        r#"{"rootGroups":[{"name":"a","hardConcurrencyLimit":1,"maxQueued":1,"colour":"red"}]}"#;
    let e = errors(unknown);
    assert!(
        e[0].starts_with("rootGroups[0].colour: unknown field `colour`"),
        "{e:?}"
    );

    let missing = r#"{"rootGroups":[{"name":"a","maxQueued":1}]}"#;
    assert!(
        errors(missing)[0].starts_with("rootGroups[0].hardConcurrencyLimit: required"),
        "{:?}",
        errors(missing)
    );
}

#[test]
fn every_semantic_problem_is_reported_with_its_path() {
    let text = r#"{"rootGroups":[
        {"name":"a","hardConcurrencyLimit":1,"maxQueued":-3,"schedulingPolicy":"lottery","schedulingWeight":0,
         "softMemoryLimit":"lots","consistency":{"mode":"eventual"}},
        {"name":"a","hardConcurrencyLimit":1,"maxQueued":1,"consistency":{"mode":"sometimes"},
         "subGroups":[{"name":"x.y","hardConcurrencyLimit":1,"maxQueued":1}]}],
      "selectors":[{"user":"(","group":"a"},{"group":"b.c"},{"group":"a"},{"queryType":"SELEKT","group":"a"}]}"#;
    let e = errors(text);
    let want = [
        "rootGroups[0].maxQueued: must be >= 0",
        "rootGroups[0].schedulingWeight: must be >= 1",
        "rootGroups[0].schedulingPolicy: 'lottery' is not one of",
        "rootGroups[0].softMemoryLimit: 'lots' is not a size",
        "rootGroups[0].consistency.maxStalenessMs: is required for mode eventual",
        "rootGroups[1].name: 'a' appears twice",
        "rootGroups[1].consistency.mode: 'sometimes' is not one of",
        "rootGroups[1].subGroups[0].name: must be non-empty and contain no '.'",
        "selectors[0].user: invalid regex",
        "selectors[1].group: 'b.c' names no group",
        "selectors[3].queryType: 'SELEKT' is not one of",
    ];
    for w in want {
        assert!(
            e.iter().any(|x| x.starts_with(w)),
            "missing '{w}' in {e:#?}"
        );
    }
    assert!(!e.iter().any(|x| x.starts_with("selectors[2]")), "{e:#?}");
}

#[test]
fn a_selector_naming_a_non_leaf_group_loads_with_a_warning() {
    // As Trino: the file loads, and queries it selects fail at run time.
    let text = r#"{"rootGroups":[{"name":"a","hardConcurrencyLimit":1,"maxQueued":1,
        "subGroups":[{"name":"b","hardConcurrencyLimit":1,"maxQueued":1}]}],"selectors":[{"group":"a"}]}"#;
    let rg = parse(text, &DEFAULT).unwrap();
    assert!(
        rg.warnings
            .iter()
            .any(|w| w.starts_with("selectors[0].group: 'a' is not a leaf group")),
        "{:?}",
        rg.warnings
    );
    assert!(!rg.resolve("a").unwrap().last().unwrap().is_leaf());
}

#[test]
fn templates_fit_concrete_names() {
    use super::spec::template_fits;
    assert!(template_fits("${USER}", "alice"));
    assert!(!template_fits("${USER}", ""));
    assert!(!template_fits("${USER}", "a.b"));
    assert!(template_fits("bi-${tool}", "bi-x"));
    // A variable may expand to nothing (an absent source, an empty capture).
    assert!(template_fits("bi-${tool}", "bi-"));
    assert!(!template_fits("bi-${tool}", "b"));
    assert!(template_fits("${a}-${b}", "x-y-z"));
    assert!(template_fits("p_${USER}_q", "p_u_q"));
    assert!(!template_fits("p_${USER}_q", "p_u_r"));
    assert!(template_fits("plain", "plain") && !template_fits("plain", "plains"));
}

#[test]
fn memory_limits_parse_like_trino() {
    use super::raw::parse_memory_limit;
    assert_eq!(parse_memory_limit("80%"), Ok(MemoryLimit::Percent(80.0)));
    assert_eq!(
        parse_memory_limit("512MB"),
        Ok(MemoryLimit::Bytes(512 << 20))
    );
    assert_eq!(parse_memory_limit("1.5GB"), Ok(MemoryLimit::Bytes(3 << 29)));
    assert!(parse_memory_limit("120%").is_err());
    assert!(parse_memory_limit("12 parsecs").is_err());
}

#[test]
fn templates_split_into_literals_and_variables() {
    use super::spec::{template_parts, TemplatePart::*};
    assert_eq!(
        template_parts("a${x}b${y}"),
        [Literal("a"), Var("x"), Literal("b"), Var("y")]
    );
    assert_eq!(template_parts("${USER}"), [Var("USER")]);
    assert_eq!(template_parts("plain"), [Literal("plain")]);
    assert_eq!(template_parts("open${x"), [Literal("open${x")]);
}

#[test]
fn query_priority_groups_need_query_priority_subgroups() {
    let text = r#"{"rootGroups":[{"name":"p","hardConcurrencyLimit":1,"maxQueued":1,"schedulingPolicy":"query_priority",
        "subGroups":[{"name":"a","hardConcurrencyLimit":1,"maxQueued":1,"schedulingPolicy":"query_priority"},
                     {"name":"b","hardConcurrencyLimit":1,"maxQueued":1,"schedulingPolicy":"fair"}]}]}"#;
    assert_eq!(
        errors(text),
        ["rootGroups[0].subGroups[1].schedulingPolicy: must be query_priority under a query_priority group"]
    );
    // One that states no policy inherits it, as in Trino.
    let inherits = text.replace(r#","schedulingPolicy":"fair""#, "");
    assert!(parse(&inherits, &DEFAULT).is_ok());
}

#[test]
fn chains_run_from_the_root_to_the_group() {
    assert_eq!(chain_ids("a.b.c"), ["a", "a.b", "a.b.c"]);
    assert_eq!(chain_ids("root"), ["root"]);
}

#[test]
fn a_template_value_is_bounded_and_printable_and_keeps_names_apart() {
    let rg = parse(EXAMPLE, &DEFAULT).unwrap();
    let long = "x".repeat(300);
    let longer = format!("{long}y");
    let id = |user: &str| {
        rg.select_id(&ctx(user, Some("jdbc#tableau"), &["hipri"]))
            .unwrap()
    };
    for user in [
        long.as_str(),
        "tab\there",
        "ünïcødé-ünïcødé-ünïcødé-ünïcødé-ünïcødé-ünïcødé",
    ] {
        let group = id(user);
        let leaf = group.rsplit('.').next().unwrap();
        assert!(leaf.len() <= MAX_TEMPLATE_VALUE_BYTES, "{group}");
        assert!(!group.chars().any(char::is_control), "{group:?}");
        assert!(rg.resolve(&group).is_some(), "{group} must resolve");
    }
    // Two long names that share their start stay two groups, every time.
    assert_ne!(id(&long), id(&longer));
    assert_eq!(id(&long), id(&long));
    // Short, plain names are unchanged.
    assert_eq!(id("alice"), "global.adhoc.bi-tableau.alice");
}

/// Trino-shaped files that Trino loads: aliases, defaults and fields we
/// accept (and report when not enforced) rather than refuse.
#[test]
fn upstream_shaped_files_load_as_trino_loads_them() {
    let file = r#"{
      "rootGroups": [
        {"name": "global", "softMemoryLimit": "80%", "maxRunning": 100, "maxQueued": 1000,
         "schedulingPolicy": "WEIGHTED", "hardCpuLimit": "1h", "softCpuLimit": "30m",
         "hardPhysicalDataScanLimit": "1GB", "softPhysicalDataScanLimit": "512MB",
         "subGroups": [
           {"name": "data_definition", "hardConcurrencyLimit": 5, "schedulingWeight": 1},
           {"name": "pipeline", "hardConcurrencyLimit": 5, "softConcurrencyLimit": 2,
            "maxQueued": 10, "schedulingWeight": 2}
         ]},
        {"name": "prio", "hardConcurrencyLimit": 2, "maxQueued": 2,
         "schedulingPolicy": "query_priority",
         "subGroups": [{"name": "a", "hardConcurrencyLimit": 1, "maxQueued": 1}]}
      ],
      "selectors": [
        {"queryType": "data_definition", "group": "global.data_definition"},
        {"queryType": "MERGE", "group": "global.pipeline"},
        {"originalUser": "admin", "group": "prio.a"},
        {"authenticatedUser": "svc", "group": "prio.a"},
        {"group": "global"}
      ],
      "cpuQuotaPeriod": "1h",
      "physicalDataScanQuotaPeriod": "1d"
    }"#;
    let rg = parse(file, &DEFAULT).unwrap_or_else(|e| panic!("{e}"));
    let global = &rg.roots[0];
    assert_eq!(
        global.hard_concurrency_limit, 100,
        "maxRunning is hardConcurrencyLimit"
    );
    assert_eq!(global.scheduling_policy, SchedulingPolicy::Weighted);
    assert_eq!(
        global.sub_groups[0].max_queued, 0,
        "a missing maxQueued is 0"
    );
    assert_eq!(
        rg.roots[1].sub_groups[0].scheduling_policy,
        SchedulingPolicy::QueryPriority,
        "inherited from a query_priority parent"
    );
    for field in [
        "hardPhysicalDataScanLimit",
        "softPhysicalDataScanLimit",
        "physicalDataScanQuotaPeriod",
    ] {
        assert!(
            rg.warnings.iter().any(|w| w.contains(field)),
            "{field} must be reported: {:?}",
            rg.warnings
        );
    }
    assert!(
        !rg.warnings.iter().any(|w| w.contains("CpuLimit")),
        "CPU limits are enforced: {:?}",
        rg.warnings
    );
    assert_eq!(
        global.cpu_limits,
        Some(crate::CpuLimits::new(
            Some(30 * 60_000),
            3_600_000,
            3_600_000
        ))
    );
    assert!(
        rg.warnings
            .iter()
            .any(|w| w.contains("selectors[4]") && w.contains("leaf")),
        "a selector naming a non-leaf group loads, with a warning: {:?}",
        rg.warnings
    );
    let ctx = |user: &str, query_type: &str| QueryContext {
        user: user.into(),
        query_type: Some(query_type.into()),
        ..Default::default()
    };
    assert_eq!(
        rg.select_id(&ctx("bob", "DATA_DEFINITION")).as_deref(),
        Some("global.data_definition")
    );
    assert_eq!(
        rg.select_id(&ctx("bob", "MERGE")).as_deref(),
        Some("global.pipeline")
    );
    // An originalUser or authenticatedUser selector matches only them.
    assert_eq!(
        rg.select_id(&ctx("bob", "SELECT")).as_deref(),
        Some("global")
    );
    assert_eq!(
        rg.select_id(&ctx("admin", "SELECT")).as_deref(),
        Some("prio.a")
    );
    let impersonated = QueryContext {
        user: "alice".into(),
        original_user: Some("admin".into()),
        ..Default::default()
    };
    assert_eq!(rg.select_id(&impersonated).as_deref(), Some("prio.a"));
    let authenticated = QueryContext {
        user: "alice".into(),
        authenticated_user: Some("svc".into()),
        ..Default::default()
    };
    assert_eq!(rg.select_id(&authenticated).as_deref(), Some("prio.a"));
}

/// Trino's validation rules, each with its JSON path.
#[test]
fn trinos_validation_rules_hold() {
    let cases = [
        (
            r#"{"rootGroups":[{"name":"g","maxQueued":1}]}"#,
            "rootGroups[0].hardConcurrencyLimit",
        ),
        (
            r#"{"rootGroups":[{"name":"g","hardConcurrencyLimit":1,"softConcurrencyLimit":2,"maxQueued":1}]}"#,
            "rootGroups[0].softConcurrencyLimit",
        ),
        (
            r#"{"rootGroups":[{"name":"g","hardConcurrencyLimit":1,"maxQueued":1,"softCpuLimit":"1h"}]}"#,
            "rootGroups[0].softCpuLimit",
        ),
        (
            r#"{"rootGroups":[{"name":"g","hardConcurrencyLimit":1,"maxQueued":1,"hardCpuLimit":"an hour"}]}"#,
            "rootGroups[0].hardCpuLimit",
        ),
        (
            r#"{"rootGroups":[{"name":"g","hardConcurrencyLimit":1,"maxQueued":1,"hardCpuLimit":"1h"}]}"#,
            "rootGroups[0].hardCpuLimit",
        ),
        (
            r#"{"rootGroups":[{"name":"g","hardConcurrencyLimit":1,"maxQueued":1,"hardCpuLimit":"1m","softCpuLimit":"2m"}],
                "cpuQuotaPeriod":"1h"}"#,
            "rootGroups[0].softCpuLimit",
        ),
        (
            r#"{"rootGroups":[{"name":"g","hardConcurrencyLimit":1,"maxQueued":1}],"cpuQuotaPeriod":"0s"}"#,
            "cpuQuotaPeriod",
        ),
        (
            r#"{"rootGroups":[{"name":"g","hardConcurrencyLimit":1,"maxQueued":1,"perQueryLimits":{"totalMemoryLimit":"10%"}}]}"#,
            "rootGroups[0].perQueryLimits.totalMemoryLimit",
        ),
        (
            r#"{"rootGroups":[{"name":"g","hardConcurrencyLimit":1,"maxQueued":1,"perQueryLimits":{"cpuTimeLimit":"soon"}}]}"#,
            "rootGroups[0].perQueryLimits.cpuTimeLimit",
        ),
        (
            r#"{"rootGroups":[{"name":"g","hardConcurrencyLimit":1,"maxQueued":1,"hardPhysicalDataScanLimit":"50%"}]}"#,
            "rootGroups[0].hardPhysicalDataScanLimit",
        ),
        (
            r#"{"rootGroups":[{"name":"p","hardConcurrencyLimit":1,"maxQueued":1,"schedulingPolicy":"weighted","subGroups":[
                {"name":"a","hardConcurrencyLimit":1,"maxQueued":1,"schedulingWeight":2},
                {"name":"b","hardConcurrencyLimit":1,"maxQueued":1}]}]}"#,
            "rootGroups[0].subGroups[1].schedulingWeight",
        ),
        (
            r#"{"rootGroups":[{"name":"p","hardConcurrencyLimit":1,"maxQueued":1,"schedulingPolicy":"fair","subGroups":[
                {"name":"a","hardConcurrencyLimit":1,"maxQueued":1,"schedulingWeight":2}]}]}"#,
            "rootGroups[0].subGroups[0].schedulingWeight",
        ),
        (
            r#"{"rootGroups":[{"name":"${USER}","hardConcurrencyLimit":1,"maxQueued":1}],
                "selectors":[{"group":"${USR}"}]}"#,
            "selectors[0].group",
        ),
        (
            r#"{"rootGroups":[{"name":"g","hardConcurrencyLimit":1,"maxQueued":1}],
                "selectors":[{"queryType":"SELEKT","group":"g"}]}"#,
            "selectors[0].queryType",
        ),
    ];
    for (file, path) in cases {
        match parse(file, &DEFAULT) {
            Ok(_) => panic!("{file} loaded; expected an error at {path}"),
            Err(e) => assert!(
                e.0.iter().any(|m| m.starts_with(path)),
                "{file}: expected an error at {path}, got {e}"
            ),
        }
    }
    // A named capture is a variable; so are USER and SOURCE.
    let ok = r#"{"rootGroups":[{"name":"bi-${tool}","hardConcurrencyLimit":1,"maxQueued":1},
        {"name":"${USER}","hardConcurrencyLimit":1,"maxQueued":1}],
        "selectors":[{"source":"(?<tool>[a-z]+)","group":"bi-${tool}"},{"group":"${USER}"}]}"#;
    parse(ok, &DEFAULT).unwrap_or_else(|e| panic!("{e}"));
}

/// Presto's per-query limits and worker cap load; the cap is reported.
#[test]
fn prestos_per_query_limits_load() {
    let rg = parse(
        r#"{"rootGroups":[{"name":"g","hardConcurrencyLimit":1,"maxQueued":1,
            "workersPerQueryLimit": 10,
            "perQueryLimits":{"executionTimeLimit":"1h","totalMemoryLimit":"1GB","cpuTimeLimit":"30m"}}]}"#,
        &DEFAULT,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        rg.roots[0].per_query_limits,
        crate::PerQueryLimits {
            execution_time_ms: Some(3_600_000),
            total_memory_bytes: Some(1 << 30),
            cpu_time_ms: Some(1_800_000),
        }
    );
    assert!(
        rg.warnings
            .iter()
            .any(|w| w.contains("workersPerQueryLimit")),
        "{:?}",
        rg.warnings
    );
}

#[test]
fn a_template_variable_is_defined_once() {
    // As Trino: a capture name twice across a selector's patterns, or one
    // named like a predefined variable, is refused.
    let file = |selector: &str| {
        format!(
            r#"{{"rootGroups":[{{"name":"${{x}}","hardConcurrencyLimit":1,"maxQueued":1}}],
                "selectors":[{selector}]}}"#
        )
    };
    let twice = file(r#"{"user":"(?<x>.*)","source":"(?<x>.*)","group":"${x}"}"#);
    assert!(
        errors(&twice)[0].starts_with("selectors[0].source: '${x}' is defined twice"),
        "{:?}",
        errors(&twice)
    );
    let predefined = file(r#"{"user":"(?<USER>.*)","group":"${x}"}"#);
    assert!(
        errors(&predefined)[0].starts_with("selectors[0].user: '${USER}' is defined twice"),
        "{:?}",
        errors(&predefined)
    );
}

#[test]
fn resource_estimate_ranges_are_parsed_at_load_with_their_paths() {
    let file = |ranges: &str| {
        format!(
            r#"{{"rootGroups":[{{"name":"g","hardConcurrencyLimit":1,"maxQueued":1}}],
                "selectors":[{{"group":"g"}},{{"selectorResourceEstimate":{ranges},"group":"g"}}]}}"#
        )
    };
    for (ranges, want) in [
        (
            r#"{"executionTime":{"min":"soon"}}"#,
            "selectors[1].selectorResourceEstimate.executionTime.min: 'soon' is not a duration",
        ),
        (
            r#"{"cpuTime":{"max":"1 parsec"}}"#,
            "selectors[1].selectorResourceEstimate.cpuTime.max:",
        ),
        (
            r#"{"peakMemory":{"max":"50%"}}"#,
            "selectors[1].selectorResourceEstimate.peakMemory.max: '50%' is not an absolute size",
        ),
        (
            r#"{"peakMemory":{"atMost":"1GB"}}"#,
            "selectors[1].selectorResourceEstimate.peakMemory.atMost: unknown field",
        ),
    ] {
        let e = errors(&file(ranges));
        assert!(e[0].starts_with(want), "{ranges}: {e:?}");
    }
    let rg = parse(
        &file(r#"{"executionTime":{"min":"1m","max":"1h"},"peakMemory":{"max":"1GB"}}"#),
        &DEFAULT,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        rg.warnings.is_empty(),
        "estimates are matched: {:?}",
        rg.warnings
    );
    let with = |header: &str| {
        let q = QueryContext {
            user: "u".into(),
            resource_estimates: ResourceEstimates::from_headers([header]).unwrap(),
            ..Default::default()
        };
        rg.selectors[1].select(&q).is_some()
    };
    // Both bounds are included (Trino's check); a missing estimate of a
    // constrained resource does not match.
    assert!(with("EXECUTION_TIME=1m,PEAK_MEMORY=1GB"));
    assert!(with("execution_time=1h, peak_memory=0B"));
    assert!(!with("EXECUTION_TIME=59s,PEAK_MEMORY=1GB"));
    assert!(!with("EXECUTION_TIME=61m,PEAK_MEMORY=1GB"));
    assert!(!with("EXECUTION_TIME=30m,PEAK_MEMORY=1025MB"));
    assert!(!with("EXECUTION_TIME=30m"));
    assert!(!with(""));
}

#[test]
fn resource_estimate_headers_parse_as_trinos() {
    let e = ResourceEstimates::from_headers(["EXECUTION_TIME=1h,CPU_TIME=10s", "PEAK_MEMORY=4GB"])
        .unwrap();
    assert_eq!(
        e,
        ResourceEstimates {
            execution_time_ms: Some(3_600_000),
            cpu_time_ms: Some(10_000),
            peak_memory_bytes: Some(4 << 30),
        }
    );
    // The later value of a name wins; empty items are skipped.
    let e = ResourceEstimates::from_headers(["CPU_TIME=1s,, CPU_TIME=2s"]).unwrap();
    assert_eq!(e.cpu_time_ms, Some(2_000));
    for bad in [
        "CPU_TIME",
        "CPU_TIME=fast",
        "PEAK_MEMORY=10%",
        "DISK_SPACE=1GB",
    ] {
        assert!(ResourceEstimates::from_headers([bad]).is_err(), "{bad}");
    }
}

#[test]
fn an_absent_source_matches_no_source_pattern_and_expands_to_nothing() {
    let text = r#"{"rootGroups":[{"name":"g","hardConcurrencyLimit":1,"maxQueued":1,
        "subGroups":[{"name":"s-${SOURCE}","hardConcurrencyLimit":1,"maxQueued":1},
                     {"name":"any","hardConcurrencyLimit":1,"maxQueued":1}]}],
        "selectors":[{"source":".*","group":"g.any"},{"group":"g.s-${SOURCE}"}]}"#;
    let rg = parse(text, &DEFAULT).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        rg.select_id(&ctx("u", Some(""), &[])).as_deref(),
        Some("g.any"),
        "an empty source is a source"
    );
    let selected = rg.select(&ctx("u", None, &[])).unwrap();
    assert_eq!(selected.id, "g.s-");
    assert_eq!(selected.spec_path, [0, 0]);
    assert_eq!(
        rg.resolve_selected(&selected).unwrap()[1].name,
        "s-${SOURCE}"
    );
}

#[test]
fn resolving_along_a_spec_path_checks_that_the_id_fits() {
    let rg = parse(EXAMPLE, &DEFAULT).unwrap();
    let selected = rg
        .select(&ctx("alice", Some("jdbc#tableau"), &["hipri"]))
        .unwrap();
    assert_eq!(selected.spec_path, [0, 1, 1, 0]);
    let names = |chain: Vec<&GroupSpec>| chain.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(rg.resolve_selected(&selected).unwrap()),
        ["global", "adhoc", "bi-${toolname}", "${USER}"]
    );
    let other = |id: &str, path: &[usize]| resolve_along(&rg.roots, id, path).is_some();
    assert!(!other("global.adhoc.tableau.alice", &selected.spec_path));
    assert!(!other("global.adhoc.bi-tableau", &selected.spec_path));
    assert!(!other("global.adhoc.bi-tableau.alice", &[0, 1, 9, 0]));
    assert!(other("global.adhoc.other.alice", &[0, 1, 0, 0]));
}

#[test]
fn names_follow_trinos_template_rule() {
    use super::spec::template_name_error;
    for ok in ["plain", "${USER}", "bi-${tool}", "${a}:${b2}:${c}", "x_y-z"] {
        assert_eq!(template_name_error(ok), None, "{ok}");
    }
    for bad in ["${a$}", "cost$", "a{b}", "${}", "${1x}", "${a_b}", "${open"] {
        assert!(template_name_error(bad).is_some(), "{bad}");
    }
    let text = r#"{"rootGroups":[{"name":"p-${x$}","hardConcurrencyLimit":1,"maxQueued":1}]}"#;
    assert!(
        errors(text)[0].starts_with("rootGroups[0].name: 'p-${x$}' has a '$'"),
        "{:?}",
        errors(text)
    );
}
