use super::*;

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
    assert_eq!(rg.select(&ctx("bob", None, &[])).as_deref(), Some("admin"));
    assert_eq!(
        rg.select(&ctx("alice", Some("jdbc#tableau"), &["hipri"]))
            .as_deref(),
        Some("global.adhoc.bi-tableau.alice")
    );
    assert_eq!(
        rg.select(&ctx("alice", Some("jdbc#tableau"), &[]))
            .as_deref(),
        Some("global.adhoc.other.alice"),
        "clientTags must all be present"
    );
    assert_eq!(
        rg.select(&ctx("carol", Some("nightly-pipeline-7"), &[]))
            .as_deref(),
        Some("global.pipeline.pipeline_carol")
    );
    let mut ddl = ctx("carol", Some("x-pipeline"), &[]);
    ddl.query_type = Some("DATA_DEFINITION".into());
    assert_eq!(rg.select(&ddl).as_deref(), Some("global.data_definition"));

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

#[test]
fn unenforced_fields_are_reported_once_each() {
    let rg = parse(EXAMPLE, &DEFAULT).unwrap();
    let fields: Vec<&str> = rg
        .warnings
        .iter()
        .map(|w| w.split(": ").nth(1).unwrap_or(""))
        .collect();
    for field in ["softMemoryLimit", "jmxExport", "cpuQuotaPeriod"] {
        assert_eq!(
            fields.iter().filter(|f| f.starts_with(field)).count(),
            1,
            "{field}: {:?}",
            rg.warnings
        );
    }
    assert!(rg.warnings[0].contains("not enforced"), "{:?}", rg.warnings);
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
    assert!(errors(missing)[0].contains("missing field `hardConcurrencyLimit`"));
}

#[test]
fn every_semantic_problem_is_reported_with_its_path() {
    let text = r#"{"rootGroups":[
        {"name":"a","hardConcurrencyLimit":1,"maxQueued":-3,"schedulingPolicy":"lottery","schedulingWeight":0,
         "softMemoryLimit":"lots","consistency":{"mode":"eventual"}},
        {"name":"a","hardConcurrencyLimit":1,"maxQueued":1,"consistency":{"mode":"sometimes"},
         "subGroups":[{"name":"x.y","hardConcurrencyLimit":1,"maxQueued":1}]}],
      "selectors":[{"user":"(","group":"a"},{"group":"b.c"},{"group":"a"},{"queryType":"MERGE","group":"a"}]}"#;
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
        "selectors[3].queryType: 'MERGE' is not one of",
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
fn selectors_must_name_leaf_groups() {
    let text = r#"{"rootGroups":[{"name":"a","hardConcurrencyLimit":1,"maxQueued":1,
        "subGroups":[{"name":"b","hardConcurrencyLimit":1,"maxQueued":1}]}],"selectors":[{"group":"a"}]}"#;
    assert!(errors(text)[0].starts_with("selectors[0].group: 'a' is not a leaf group"));
}

#[test]
fn templates_fit_concrete_names() {
    use super::spec::template_fits;
    assert!(template_fits("${USER}", "alice"));
    assert!(!template_fits("${USER}", ""));
    assert!(!template_fits("${USER}", "a.b"));
    assert!(template_fits("bi-${tool}", "bi-x"));
    assert!(!template_fits("bi-${tool}", "bi-"));
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
                     {"name":"b","hardConcurrencyLimit":1,"maxQueued":1}]}]}"#;
    assert_eq!(
        errors(text),
        ["rootGroups[0].subGroups[1].schedulingPolicy: must be query_priority under a query_priority group"]
    );
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
        rg.select(&ctx(user, Some("jdbc#tableau"), &["hipri"]))
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
