//! What a statement asks of the engine. There is no SQL engine yet: the
//! coordinator answers `SELECT 1`, runs a simulated task for any statement
//! that carries both simulation session properties, and fails everything
//! else cleanly with `NOT_SUPPORTED` (never a hang).

use std::collections::BTreeMap;

use crate::protocol::{ErrorKind, QueryError};

pub const SIMULATE_DURATION: &str = "simulate_duration_ms";
pub const SIMULATE_MEMORY: &str = "simulate_memory_bytes";
/// Trino's session property for `query_priority` scheduling.
pub const QUERY_PRIORITY: &str = "query_priority";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// Answered by the coordinator: one row, one integer column.
    SelectOne,
    /// A task on a worker that holds `memory_bytes` for `duration_ms`.
    Simulated { duration_ms: u64, memory_bytes: u64 },
}

/// Classifies `sql` given the session properties.
pub fn classify(sql: &str, session: &BTreeMap<String, String>) -> Result<Statement, QueryError> {
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
    if normalized.is_empty() {
        return Err(QueryError::new(ErrorKind::SyntaxError, "empty statement"));
    }
    if normalized == ["select", "1"] {
        return Ok(Statement::SelectOne);
    }
    Err(QueryError::new(
        ErrorKind::NotSupported,
        format!(
            "this engine runs only SELECT 1 and simulated queries (session properties {SIMULATE_DURATION} and {SIMULATE_MEMORY}); got: {}",
            sql.chars().take(200).collect::<String>()
        ),
    ))
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
                memory_bytes: 1048576
            })
        );
    }

    #[test]
    fn everything_else_fails_with_trinos_error_names() {
        let name = |r: Result<Statement, QueryError>| r.unwrap_err().error_name;
        assert_eq!(name(classify("SELECT 2", &props(&[]))), "NOT_SUPPORTED");
        assert_eq!(name(classify("  ;", &props(&[]))), "SYNTAX_ERROR");
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
}
