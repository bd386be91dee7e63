//! A query's failure, by Trino's error name.

use common::api::ErrorLocation;
use serde::{Deserialize, Serialize};

/// Why a query failed, as the client is told (the name is Trino's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{name}: {message}")]
pub struct EngineError {
    pub name: String,
    pub message: String,
    #[serde(default)]
    pub location: Option<ErrorLocation>,
}

impl EngineError {
    pub fn new(name: &str, message: impl Into<String>) -> EngineError {
        EngineError {
            name: name.to_string(),
            message: message.into(),
            location: None,
        }
    }

    pub fn internal(message: impl Into<String>) -> EngineError {
        EngineError::new("GENERIC_INTERNAL_ERROR", message)
    }

    pub fn not_supported(message: impl Into<String>) -> EngineError {
        EngineError::new("NOT_SUPPORTED", message)
    }
}

impl From<trino_sql::SqlError> for EngineError {
    fn from(e: trino_sql::SqlError) -> EngineError {
        EngineError {
            name: e.kind.name().to_string(),
            location: e.line.zip(e.column).map(|(l, c)| ErrorLocation {
                line_number: l,
                column_number: c,
            }),
            message: e.message,
        }
    }
}

/// Longest message kept from a polars error.
const MAX_MESSAGE: usize = 400;

/// A polars error, named as Trino would name the failure.
pub fn from_polars(e: polars::error::PolarsError) -> EngineError {
    use polars::error::PolarsError as P;
    let mut text = e.to_string();
    let lower = text.to_lowercase();
    let unsupported = [
        "support",
        "not yet",
        "not implemented",
        "unexpected subquery",
    ]
    .iter()
    .any(|w| lower.contains(w));
    let name = match &e {
        P::ColumnNotFound(_) | P::SchemaFieldNotFound(_) | P::StructFieldNotFound(_) => {
            "COLUMN_NOT_FOUND"
        }
        // The statement parsed (`trino-sql` checked its syntax first): what
        // the executor's SQL front end cannot read is a construct it lacks.
        P::SQLSyntax(_) => "NOT_SUPPORTED",
        _ if unsupported => "NOT_SUPPORTED",
        P::SQLInterface(_) if lower.starts_with("expression ") => "NOT_SUPPORTED",
        P::SQLInterface(_) if lower.contains("not found") || lower.contains("no column") => {
            "COLUMN_NOT_FOUND"
        }
        P::SQLInterface(_) | P::InvalidOperation(_) => "GENERIC_USER_ERROR",
        P::SchemaMismatch(_) => "TYPE_MISMATCH",
        // Trino allows two output columns of one name (`GROUP BY c.name,
        // n.name`); polars does not.
        P::Duplicate(_) => "NOT_SUPPORTED",
        _ if lower.contains("division by zero") => "DIVISION_BY_ZERO",
        _ => "GENERIC_INTERNAL_ERROR",
    };
    // polars names an expression it cannot run by printing its syntax
    // tree: name the construct instead.
    if let Some(tree) = text.strip_prefix("expression ") {
        let construct = tree.split([' ', '{', '(']).next().unwrap_or_default();
        text = match construct {
            "Exists" => "EXISTS correlated with the outer query in a way this engine does not rewrite (it takes one equality with the outer query and conditions on the subquery's own tables)".to_string(),
            "Subquery" => "a subquery correlated with the outer query in a way this engine does not rewrite".to_string(),
            other => format!("the expression {other} (polars' SQL does not run it)"),
        };
    } else if lower.contains("unexpected subquery") {
        text = "a subquery correlated with the outer query in a way this engine does not rewrite (sum, avg, min or max compared in a WHERE, correlated by equalities, is rewritten)".to_string();
    }
    // Some messages print a whole syntax tree.
    if text.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(" ...");
    }
    EngineError::new(name, text)
}
