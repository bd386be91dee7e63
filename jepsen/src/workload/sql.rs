//! The sql workload's statements: the TPC-H queries (`jepsen/tpch/queries`,
//! Trino's dialect) at `tpch.tiny`, and what each must answer. The
//! expected answers come from the engine the workers run, executed here in
//! the harness's own process on the same generated data: a finished query
//! that answers anything else lost, doubled or damaged rows on its way
//! through coordinators, worker processes, spools and the protocol.
//!
//! Answers are compared row by row, numbers with a relative tolerance of
//! 1e-9 (a parallel sum adds in a different order each run), and in any
//! order if not in the same one (a query's ties may come either way).

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

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b))
        }
        _ => a == b,
    }
}

/// A row's sort key: its text with numbers rounded (to 6 significant
/// digits), so rows that differ only in a number's last bits sort alike.
fn sort_key(row: &Value) -> String {
    match row {
        Value::Array(values) => values
            .iter()
            .map(|v| match v.as_f64() {
                Some(f) if v.is_f64() => format!("{f:.5e}"),
                _ => v.to_string(),
            })
            .collect::<Vec<_>>()
            .join("|"),
        other => other.to_string(),
    }
}

/// Whether `got` is the answer `want`: `Err` names the first difference.
pub fn same_rows(got: &[Value], want: &[Value]) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{} rows, not {}", got.len(), want.len()));
    }
    let in_order = got.iter().zip(want).all(|(a, b)| same_value(a, b));
    if in_order {
        return Ok(());
    }
    let sorted = |rows: &[Value]| {
        let mut v = rows.to_vec();
        v.sort_by_key(sort_key);
        v
    };
    let (g, w) = (sorted(got), sorted(want));
    match g.iter().zip(&w).position(|(a, b)| !same_value(a, b)) {
        None => Ok(()),
        Some(i) => Err(format!(
            "row {}: {} where {} was expected (rows sorted)",
            i, g[i], w[i]
        )),
    }
}

/// What each query answers, computed here: name -> rows, or the error
/// name of a query the engine does not run (such a query must fail the
/// same way through the cluster).
pub fn expected(
    tpch_cache: &std::path::Path,
) -> BTreeMap<&'static str, Result<Vec<Value>, String>> {
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
                .map(|rows| rows.into_iter().map(Value::Array).collect())
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
    fn answers_compare_with_a_tolerance_and_in_any_order() {
        let want = [json!([1, "x", 10.0]), json!([2, "y", 2.5])];
        assert_eq!(same_rows(&want, &want), Ok(()));
        let reordered = [json!([2, "y", 2.5]), json!([1, "x", 10.000000000001])];
        assert_eq!(same_rows(&reordered, &want), Ok(()));
        assert!(
            same_rows(&[json!([2, "y", 2.6]), json!([1, "x", 10.0])], &want)
                .unwrap_err()
                .contains("2.6")
        );
        assert_eq!(
            same_rows(&want[..1], &want),
            Err("1 rows, not 2".to_string())
        );
        assert!(same_rows(&[json!([1, "x", 10.0]), json!([2, "z", 2.5])], &want).is_err());
    }
}
