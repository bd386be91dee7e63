//! The sql workload's statements: the TPC-H queries (`jepsen/tpch/queries`,
//! Trino's dialect) at `tpch.tiny`, and what each must answer. The
//! expected answers come from the engine the workers run, executed here in
//! the harness's own process on the same generated data: a finished query
//! that answers anything else lost, doubled or damaged rows on its way
//! through coordinators, worker processes, spools and the protocol.
//!
//! Answers are compared as digests of their rows, order aside (a query's
//! ties may come in any order).

use std::collections::BTreeMap;

use common::api::SqlWork;
use serde_json::Value;

pub const CATALOG: &str = "tpch";
pub const SCHEMA: &str = "tiny";

/// Every TPC-H query, by name.
pub fn queries() -> &'static [(&'static str, &'static str)] {
    const QUERIES: &[(&str, &str)] = &[
        ("q01", include_str!("../../tpch/queries/q01.sql")),
        ("q02", include_str!("../../tpch/queries/q02.sql")),
        ("q03", include_str!("../../tpch/queries/q03.sql")),
        ("q04", include_str!("../../tpch/queries/q04.sql")),
        ("q05", include_str!("../../tpch/queries/q05.sql")),
        ("q06", include_str!("../../tpch/queries/q06.sql")),
        ("q07", include_str!("../../tpch/queries/q07.sql")),
        ("q08", include_str!("../../tpch/queries/q08.sql")),
        ("q09", include_str!("../../tpch/queries/q09.sql")),
        ("q10", include_str!("../../tpch/queries/q10.sql")),
        ("q11", include_str!("../../tpch/queries/q11.sql")),
        ("q12", include_str!("../../tpch/queries/q12.sql")),
        ("q13", include_str!("../../tpch/queries/q13.sql")),
        ("q14", include_str!("../../tpch/queries/q14.sql")),
        ("q15", include_str!("../../tpch/queries/q15.sql")),
        ("q16", include_str!("../../tpch/queries/q16.sql")),
        ("q17", include_str!("../../tpch/queries/q17.sql")),
        ("q18", include_str!("../../tpch/queries/q18.sql")),
        ("q19", include_str!("../../tpch/queries/q19.sql")),
        ("q20", include_str!("../../tpch/queries/q20.sql")),
        ("q21", include_str!("../../tpch/queries/q21.sql")),
        ("q22", include_str!("../../tpch/queries/q22.sql")),
    ];
    QUERIES
}

/// A digest of `rows` (Trino's JSON values), their order aside.
pub fn digest(rows: &[Value]) -> String {
    let mut lines: Vec<String> = rows.iter().map(Value::to_string).collect();
    lines.sort();
    let mut h = crc32fast::Hasher::new();
    for l in &lines {
        h.update(l.as_bytes());
        h.update(b"\n");
    }
    format!("{:08x}/{}", h.finalize(), rows.len())
}

/// What each query answers, computed here: name -> digest, or the error
/// name of a query the engine does not run (such a query must fail the
/// same way through the cluster).
pub fn expected(tpch_cache: &std::path::Path) -> BTreeMap<&'static str, Result<String, String>> {
    let config = engine::CatalogConfig {
        tpch_cache: tpch_cache.to_path_buf(),
        files_dir: None,
    };
    queries()
        .iter()
        .map(|(name, text)| {
            let work = SqlWork {
                sql: text.to_string(),
                catalog: Some(CATALOG.into()),
                schema: Some(SCHEMA.into()),
                system_tables: Vec::new(),
            };
            let answer = engine::job::execute(&work, &config)
                .and_then(|df| engine::encode::rows(&df))
                .map(|rows| {
                    let rows: Vec<Value> = rows.into_iter().map(Value::Array).collect();
                    digest(&rows)
                })
                .map_err(|e| e.name);
            (*name, answer)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn digests_ignore_order_and_see_every_value() {
        let a = [json!([1, "x"]), json!([2, 2.5])];
        let b = [json!([2, 2.5]), json!([1, "x"])];
        assert_eq!(digest(&a), digest(&b));
        assert_ne!(digest(&a), digest(&[json!([1, "x"]), json!([2, 2.50001])]));
        assert_ne!(digest(&a), digest(&a[..1]));
        assert!(digest(&a).ends_with("/2"));
    }
}
