//! What a statement asks of the engine. A statement that carries both
//! simulation session properties runs a simulated task (the harness's
//! deterministic load); `SELECT 1` is answered here; `USE` sets the
//! client's path; every other statement is analyzed (`trino-sql`: a syntax
//! error or an unsupported statement fails before admission, as in Trino)
//! and runs on a worker.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::protocol::{ErrorKind, QueryError};

pub const SIMULATE_DURATION: &str = "simulate_duration_ms";
pub const SIMULATE_MEMORY: &str = "simulate_memory_bytes";
/// CPU time a simulated task uses, spread evenly over its duration
/// (default: the duration, one core busy); group CPU limits count it.
pub const SIMULATE_CPU: &str = "simulate_cpu_ms";
/// Trino's session property for `query_priority` scheduling.
pub const QUERY_PRIORITY: &str = "query_priority";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// Answered by the coordinator: one row, one integer column.
    SelectOne,
    /// A task on a worker that holds `memory_bytes` for `duration_ms` and
    /// uses `cpu_ms` of CPU time meanwhile.
    Simulated {
        duration_ms: u64,
        memory_bytes: u64,
        cpu_ms: u64,
    },
    /// `USE catalog.schema`: the client's new path.
    Use { catalog: String, schema: String },
    /// A query (metadata statements included) for a worker.
    Query {
        /// It reads `system.runtime` tables, whose rows only coordinators
        /// and RMs know: they go with the task.
        reads_runtime: bool,
    },
}

/// Classifies `sql` given the session properties and the client's path.
pub fn classify(
    sql: &str,
    session: &BTreeMap<String, String>,
    path: &trino_sql::SessionPath,
) -> Result<Statement, QueryError> {
    let number = |name: &str| -> Result<Option<u64>, QueryError> {
        session
            .get(name)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    QueryError::new(
                        ErrorKind::InvalidSessionProperty,
                        format!("{name}: '{v}' is not a non-negative integer"),
                    )
                })
            })
            .transpose()
    };
    match (number(SIMULATE_DURATION)?, number(SIMULATE_MEMORY)?) {
        (Some(duration_ms), Some(memory_bytes)) => {
            return Ok(Statement::Simulated {
                duration_ms,
                memory_bytes,
                cpu_ms: number(SIMULATE_CPU)?.unwrap_or(duration_ms),
            })
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(QueryError::new(
                ErrorKind::InvalidSessionProperty,
                format!("a simulated query needs both {SIMULATE_DURATION} and {SIMULATE_MEMORY}"),
            ))
        }
        (None, None) => {}
    }
    let normalized: Vec<String> = sql
        .trim()
        .trim_end_matches(';')
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    if normalized == ["select", "1"] {
        return Ok(Statement::SelectOne);
    }
    Ok(match trino_sql::analyze(sql, path)? {
        trino_sql::Analyzed::Use { catalog, schema } => Statement::Use { catalog, schema },
        trino_sql::Analyzed::Query(q) => Statement::Query {
            reads_runtime: q
                .tables
                .values()
                .any(|t| t.catalog == "system" && t.schema == "runtime"),
        },
    })
}

/// The statement's Trino query type, as resource-group selectors'
/// `queryType` matches it, from its leading keywords (comments and
/// opening parentheses skipped); `None` for what Trino would not parse.
pub fn query_type(sql: &str) -> Option<&'static str> {
    let mut rest = sql.trim_start();
    loop {
        if let Some(r) = rest.strip_prefix("--") {
            rest = r
                .split_once('\n')
                .map_or("", |(_, after)| after)
                .trim_start();
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r
                .split_once("*/")
                .map_or("", |(_, after)| after)
                .trim_start();
        } else if let Some(r) = rest.strip_prefix('(') {
            rest = r.trim_start();
        } else {
            break;
        }
    }
    let words: Vec<String> = rest
        .split(|c: char| c.is_whitespace() || c == '(' || c == ';')
        .filter(|w| !w.is_empty())
        .take(8)
        .map(str::to_ascii_lowercase)
        .collect();
    let word = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    Some(match word(0) {
        "select" | "with" | "values" | "table" => "SELECT",
        "explain" => "EXPLAIN",
        "describe" | "desc" | "show" => "DESCRIBE",
        "insert" => "INSERT",
        "update" => "UPDATE",
        "delete" => "DELETE",
        "merge" => "MERGE",
        "analyze" => "ANALYZE",
        // CREATE TABLE ... AS writes rows: Trino counts it an INSERT.
        "create" if words.iter().any(|w| w == "as") && words.iter().any(|w| w == "table") => {
            "INSERT"
        }
        "alter" if words.iter().any(|w| w == "execute") => "ALTER_TABLE_EXECUTE",
        "create" | "alter" | "drop" | "comment" | "grant" | "revoke" | "deny" | "set" | "reset"
        | "use" | "call" | "prepare" | "deallocate" | "execute" | "start" | "commit"
        | "rollback" | "truncate" | "refresh" => "DATA_DEFINITION",
        _ => return None,
    })
}

/// Trino's session properties that bound a query's time.
pub const QUERY_MAX_QUEUED_TIME: &str = "query_max_queued_time";
pub const QUERY_MAX_EXECUTION_TIME: &str = "query_max_execution_time";
pub const QUERY_MAX_RUN_TIME: &str = "query_max_run_time";

/// A query's time limits from its session (`None`: no limit of its own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeLimits {
    /// Longest time queued.
    pub queued: Option<Duration>,
    /// Longest time from admission to the end.
    pub execution: Option<Duration>,
    /// Longest time from submission to the end, queueing included.
    pub run: Option<Duration>,
}

/// The session's time limits, each a Trino duration (`30s`, `5m`, `1h`).
pub fn time_limits(session: &BTreeMap<String, String>) -> Result<TimeLimits, QueryError> {
    let get = |name: &str| -> Result<Option<Duration>, QueryError> {
        session
            .get(name)
            .map(|v| {
                common::units::parse_duration(v).map_err(|e| {
                    QueryError::new(ErrorKind::InvalidSessionProperty, format!("{name}: {e}"))
                })
            })
            .transpose()
    };
    Ok(TimeLimits {
        queued: get(QUERY_MAX_QUEUED_TIME)?,
        execution: get(QUERY_MAX_EXECUTION_TIME)?,
        run: get(QUERY_MAX_RUN_TIME)?,
    })
}

/// `query_priority` (default 1, as Trino), if given.
pub fn priority(session: &BTreeMap<String, String>) -> Result<i32, QueryError> {
    match session.get(QUERY_PRIORITY) {
        None => Ok(1),
        Some(v) => v.parse().map_err(|_| {
            QueryError::new(
                ErrorKind::InvalidSessionProperty,
                format!("{QUERY_PRIORITY}: '{v}' is not an integer"),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(sql: &str, session: &BTreeMap<String, String>) -> Result<Statement, QueryError> {
        super::classify(
            sql,
            session,
            &trino_sql::SessionPath {
                catalog: Some("tpch".into()),
                schema: Some("tiny".into()),
            },
        )
    }

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn select_one_in_any_spelling() {
        for sql in ["SELECT 1", "select 1;", "  Select\n1  ", "SELECT   1 ;"] {
            assert_eq!(
                classify(sql, &props(&[])),
                Ok(Statement::SelectOne),
                "{sql}"
            );
        }
    }

    #[test]
    fn simulation_properties_make_any_statement_a_task() {
        let p = props(&[(SIMULATE_DURATION, "250"), (SIMULATE_MEMORY, "1048576")]);
        assert_eq!(
            classify("SELECT * FROM big", &p),
            Ok(Statement::Simulated {
                duration_ms: 250,
                memory_bytes: 1048576,
                cpu_ms: 250,
            })
        );
        let p = props(&[
            (SIMULATE_DURATION, "250"),
            (SIMULATE_MEMORY, "1"),
            (SIMULATE_CPU, "1000"),
        ]);
        assert_eq!(
            classify("SELECT * FROM big", &p),
            Ok(Statement::Simulated {
                duration_ms: 250,
                memory_bytes: 1,
                cpu_ms: 1000,
            }),
            "four cores busy"
        );
    }

    #[test]
    fn queries_go_to_workers_and_bad_statements_fail_with_trinos_error_names() {
        assert_eq!(
            classify("SELECT 2", &props(&[])),
            Ok(Statement::Query {
                reads_runtime: false
            })
        );
        assert_eq!(
            classify("select * from system.runtime.queries", &props(&[])),
            Ok(Statement::Query {
                reads_runtime: true
            })
        );
        assert_eq!(
            classify("USE sf1", &props(&[])),
            Ok(Statement::Use {
                catalog: "tpch".into(),
                schema: "sf1".into()
            })
        );
        let name = |r: Result<Statement, QueryError>| r.unwrap_err().error_name;
        assert_eq!(
            name(classify("INSERT INTO t VALUES (1)", &props(&[]))),
            "NOT_SUPPORTED"
        );
        assert_eq!(name(classify("  ;", &props(&[]))), "SYNTAX_ERROR");
        let e = classify("SELECT * MORF t", &props(&[])).unwrap_err();
        assert_eq!(
            (
                e.error_name.as_str(),
                e.error_location.map(|l| l.column_number)
            ),
            ("SYNTAX_ERROR", Some(10))
        );
        assert_eq!(
            name(classify(
                "x",
                &props(&[(SIMULATE_DURATION, "-1"), (SIMULATE_MEMORY, "1")])
            )),
            "INVALID_SESSION_PROPERTY"
        );
        assert_eq!(
            name(classify("x", &props(&[(SIMULATE_DURATION, "1")]))),
            "INVALID_SESSION_PROPERTY"
        );
        assert_eq!(priority(&props(&[(QUERY_PRIORITY, "7")])), Ok(7));
        assert_eq!(priority(&props(&[])), Ok(1));
        assert!(priority(&props(&[(QUERY_PRIORITY, "high")])).is_err());
    }

    #[test]
    fn time_limits_are_trino_durations() {
        let p = props(&[
            (QUERY_MAX_QUEUED_TIME, "30s"),
            (QUERY_MAX_EXECUTION_TIME, "1h"),
        ]);
        assert_eq!(
            time_limits(&p),
            Ok(TimeLimits {
                queued: Some(Duration::from_secs(30)),
                execution: Some(Duration::from_secs(3600)),
                run: None,
            })
        );
        let bad = time_limits(&props(&[(QUERY_MAX_RUN_TIME, "soon")])).unwrap_err();
        assert_eq!(bad.error_name, "INVALID_SESSION_PROPERTY");
        assert!(bad.message.starts_with("query_max_run_time: "), "{bad:?}");
    }

    #[test]
    fn statements_have_trinos_query_types() {
        for (sql, t) in [
            ("SELECT 1", Some("SELECT")),
            (
                "  -- a comment\n (with x as (select 1) select * from x)",
                Some("SELECT"),
            ),
            ("/* hint */ values 1", Some("SELECT")),
            ("EXPLAIN SELECT 1", Some("EXPLAIN")),
            ("show tables", Some("DESCRIBE")),
            ("insert into t values 1", Some("INSERT")),
            ("CREATE TABLE t AS SELECT 1", Some("INSERT")),
            ("create table t (a int)", Some("DATA_DEFINITION")),
            (
                "MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE",
                Some("MERGE"),
            ),
            (
                "ALTER TABLE t EXECUTE optimize",
                Some("ALTER_TABLE_EXECUTE"),
            ),
            ("alter table t add column b int", Some("DATA_DEFINITION")),
            ("delete from t", Some("DELETE")),
            ("update t set a = 1", Some("UPDATE")),
            ("analyze t", Some("ANALYZE")),
            ("frobnicate", None),
            ("", None),
        ] {
            assert_eq!(query_type(sql), t, "{sql}");
        }
    }
}
