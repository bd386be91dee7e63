//! Trino's client protocol: what a client sends and what it gets back.
//! Field names and error codes are Trino's, so existing clients (the CLI,
//! JDBC, trino-python-client) read them unmodified.

use std::collections::BTreeMap;

pub use common::api::{Column, ErrorLocation};
use common::resource_groups::ResourceEstimates;
use serde::{Deserialize, Serialize};

/// The errors this coordinator raises, with Trino's own codes
/// (`io.trino.spi.StandardErrorCode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    SyntaxError,
    /// A user error Trino has no more precise code for here.
    GenericUserError,
    DivisionByZero,
    CatalogNotFound,
    SchemaNotFound,
    TableNotFound,
    ColumnNotFound,
    MissingCatalogName,
    MissingSchemaName,
    TypeMismatch,
    /// A scalar subquery gave more than one row.
    SubqueryMultipleRows,
    /// The client stopped polling.
    AbandonedQuery,
    UserCanceled,
    /// A statement this engine does not run.
    NotSupported,
    InvalidSessionProperty,
    /// No selector matched the query.
    QueryRejected,
    /// The group's queue is full.
    QueryQueueFull,
    /// Queued longer than the RMs' `queue-timeout-ms` (Trino's
    /// `query.max-queued-time` gives the same error).
    ExceededTimeLimit,
    /// The low-memory killer chose this query.
    ClusterOutOfMemory,
    /// Over `query.max-memory`.
    ExceededGlobalMemoryLimit,
    /// Over `query.max-memory-per-node`.
    ExceededLocalMemoryLimit,
    /// Over its group's `perQueryLimits.cpuTimeLimit`.
    ExceededCpuLimit,
    /// No worker is alive to run a task.
    NoNodesAvailable,
    /// Anything else on the server side, e.g. a lost admission (Trino has
    /// no code of its own for that; the message says what happened).
    GenericInternalError,
}

impl ErrorKind {
    /// (errorName, errorCode, errorType) as Trino reports them.
    pub fn trino(self) -> (&'static str, i32, &'static str) {
        match self {
            ErrorKind::GenericUserError => ("GENERIC_USER_ERROR", 0, "USER_ERROR"),
            ErrorKind::SyntaxError => ("SYNTAX_ERROR", 1, "USER_ERROR"),
            ErrorKind::DivisionByZero => ("DIVISION_BY_ZERO", 8, "USER_ERROR"),
            ErrorKind::CatalogNotFound => ("CATALOG_NOT_FOUND", 44, "USER_ERROR"),
            ErrorKind::SchemaNotFound => ("SCHEMA_NOT_FOUND", 45, "USER_ERROR"),
            ErrorKind::TableNotFound => ("TABLE_NOT_FOUND", 46, "USER_ERROR"),
            ErrorKind::ColumnNotFound => ("COLUMN_NOT_FOUND", 47, "USER_ERROR"),
            ErrorKind::MissingCatalogName => ("MISSING_CATALOG_NAME", 56, "USER_ERROR"),
            ErrorKind::MissingSchemaName => ("MISSING_SCHEMA_NAME", 57, "USER_ERROR"),
            ErrorKind::TypeMismatch => ("TYPE_MISMATCH", 58, "USER_ERROR"),
            ErrorKind::SubqueryMultipleRows => ("SUBQUERY_MULTIPLE_ROWS", 28, "USER_ERROR"),
            ErrorKind::AbandonedQuery => ("ABANDONED_QUERY", 2, "USER_ERROR"),
            ErrorKind::UserCanceled => ("USER_CANCELED", 3, "USER_ERROR"),
            ErrorKind::NotSupported => ("NOT_SUPPORTED", 13, "USER_ERROR"),
            ErrorKind::InvalidSessionProperty => ("INVALID_SESSION_PROPERTY", 14, "USER_ERROR"),
            ErrorKind::QueryRejected => ("QUERY_REJECTED", 31, "USER_ERROR"),
            ErrorKind::GenericInternalError => ("GENERIC_INTERNAL_ERROR", 65536, "INTERNAL_ERROR"),
            ErrorKind::NoNodesAvailable => ("NO_NODES_AVAILABLE", 65541, "INTERNAL_ERROR"),
            ErrorKind::QueryQueueFull => ("QUERY_QUEUE_FULL", 131074, "INSUFFICIENT_RESOURCES"),
            ErrorKind::ExceededTimeLimit => {
                ("EXCEEDED_TIME_LIMIT", 131075, "INSUFFICIENT_RESOURCES")
            }
            ErrorKind::ExceededGlobalMemoryLimit => (
                "EXCEEDED_GLOBAL_MEMORY_LIMIT",
                131073,
                "INSUFFICIENT_RESOURCES",
            ),
            ErrorKind::ClusterOutOfMemory => {
                ("CLUSTER_OUT_OF_MEMORY", 131076, "INSUFFICIENT_RESOURCES")
            }
            ErrorKind::ExceededLocalMemoryLimit => (
                "EXCEEDED_LOCAL_MEMORY_LIMIT",
                131079,
                "INSUFFICIENT_RESOURCES",
            ),
            ErrorKind::ExceededCpuLimit => ("EXCEEDED_CPU_LIMIT", 131077, "INSUFFICIENT_RESOURCES"),
        }
    }

    /// The kind a worker names (a query's failure), by its Trino name;
    /// an unknown name is an internal error.
    pub fn from_name(name: &str) -> ErrorKind {
        const ALL: &[ErrorKind] = &[
            ErrorKind::SyntaxError,
            ErrorKind::GenericUserError,
            ErrorKind::DivisionByZero,
            ErrorKind::CatalogNotFound,
            ErrorKind::SchemaNotFound,
            ErrorKind::TableNotFound,
            ErrorKind::ColumnNotFound,
            ErrorKind::MissingCatalogName,
            ErrorKind::MissingSchemaName,
            ErrorKind::TypeMismatch,
            ErrorKind::SubqueryMultipleRows,
            ErrorKind::NotSupported,
            ErrorKind::ClusterOutOfMemory,
            ErrorKind::ExceededGlobalMemoryLimit,
            ErrorKind::ExceededLocalMemoryLimit,
            ErrorKind::ExceededCpuLimit,
        ];
        ALL.iter()
            .copied()
            .find(|k| k.trino().0 == name)
            .unwrap_or(ErrorKind::GenericInternalError)
    }

    /// The kind of a kill (for memory or a per-query limit), by the error
    /// name the RMs give it.
    pub fn of_kill(error_name: &str) -> ErrorKind {
        match error_name {
            "EXCEEDED_GLOBAL_MEMORY_LIMIT" => ErrorKind::ExceededGlobalMemoryLimit,
            "EXCEEDED_LOCAL_MEMORY_LIMIT" => ErrorKind::ExceededLocalMemoryLimit,
            "EXCEEDED_CPU_LIMIT" => ErrorKind::ExceededCpuLimit,
            _ => ErrorKind::ClusterOutOfMemory,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryError {
    pub message: String,
    pub error_code: i32,
    pub error_name: String,
    pub error_type: String,
    /// Where in the statement (a syntax error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_location: Option<ErrorLocation>,
}

impl QueryError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> QueryError {
        let (name, code, kind) = kind.trino();
        QueryError {
            message: message.into(),
            error_code: code,
            error_name: name.into(),
            error_type: kind.into(),
            error_location: None,
        }
    }

    pub fn at(mut self, location: Option<ErrorLocation>) -> QueryError {
        self.error_location = location;
        self
    }
}

impl From<trino_sql::SqlError> for QueryError {
    fn from(e: trino_sql::SqlError) -> QueryError {
        let location = e.line.zip(e.column).map(|(l, c)| ErrorLocation {
            line_number: l,
            column_number: c,
        });
        QueryError::new(ErrorKind::from_name(e.kind.name()), e.message).at(location)
    }
}

/// Query states as clients see them (shared with the web UI's pages).
pub use common::api::QueryState;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatementStats {
    pub state: QueryState,
    pub queued: bool,
    pub scheduled: bool,
    pub nodes: u32,
    pub total_splits: u32,
    pub queued_splits: u32,
    pub running_splits: u32,
    pub completed_splits: u32,
    pub cpu_time_millis: u64,
    pub wall_time_millis: u64,
    pub queued_time_millis: u64,
    pub elapsed_time_millis: u64,
    pub processed_rows: u64,
    pub processed_bytes: u64,
    pub physical_input_bytes: u64,
    pub peak_memory_bytes: u64,
    pub spilled_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryResults {
    pub id: String,
    pub info_uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<Column>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Vec<Vec<serde_json::Value>>>,
    pub stats: StatementStats,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<QueryError>,
    pub warnings: Vec<serde_json::Value>,
}

/// What the request headers say about the query's origin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    pub user: String,
    /// `X-Trino-Original-User`: who asked before impersonation (selectors'
    /// `originalUser`).
    pub original_user: Option<String>,
    /// Who the coordinator authenticated (a password), if it authenticates
    /// clients (selectors' `authenticatedUser`).
    pub authenticated_user: Option<String>,
    pub source: Option<String>,
    pub client_tags: Vec<String>,
    /// `X-Trino-Resource-Estimate: EXECUTION_TIME=1h,PEAK_MEMORY=4GB`
    /// (selectors' `selectorResourceEstimate`).
    pub resource_estimates: ResourceEstimates,
    /// `X-Trino-Session: a=1, b=2`.
    pub session: BTreeMap<String, String>,
    /// `X-Trino-Catalog`, `X-Trino-Schema`: where unqualified tables are.
    pub catalog: Option<String>,
    pub schema: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("X-Trino-User (or X-Presto-User) is required")]
    MissingUser,
    #[error("{header}: '{value}' is not NAME=VALUE")]
    BadSession { header: &'static str, value: String },
    #[error("X-Trino-Resource-Estimate: {0}")]
    BadResourceEstimate(String),
}

/// Reads the client headers, Trino's names first, then Presto's legacy
/// ones. `get(name)` returns a header's value(s), lower-case names.
pub fn client_info<'a>(get: impl Fn(&str) -> Vec<&'a str>) -> Result<ClientInfo, HeaderError> {
    let one = |suffix: &str| {
        get(&format!("x-trino-{suffix}"))
            .into_iter()
            .chain(get(&format!("x-presto-{suffix}")))
            .map(str::trim)
            .find(|v| !v.is_empty())
            .map(str::to_string)
    };
    let all = |suffix: &str| -> Vec<String> {
        let trino = get(&format!("x-trino-{suffix}"));
        let values = if trino.is_empty() {
            get(&format!("x-presto-{suffix}"))
        } else {
            trino
        };
        values
            .iter()
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let user = one("user").ok_or(HeaderError::MissingUser)?;
    let mut session = BTreeMap::new();
    for item in all("session") {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| HeaderError::BadSession {
                header: "X-Trino-Session",
                value: item.clone(),
            })?;
        // Trino URL-encodes values; ours are plain numbers and names.
        session.insert(k.trim().to_string(), v.trim().to_string());
    }
    // Trino's header, else Presto's; several headers add up, as in Trino.
    let mut estimate_values = get("x-trino-resource-estimate");
    if estimate_values.is_empty() {
        estimate_values = get("x-presto-resource-estimate");
    }
    let resource_estimates = ResourceEstimates::from_headers(estimate_values)
        .map_err(HeaderError::BadResourceEstimate)?;
    Ok(ClientInfo {
        user,
        original_user: one("original-user"),
        authenticated_user: None,
        source: one("source"),
        client_tags: all("client-tags"),
        resource_estimates,
        session,
        catalog: one("catalog"),
        schema: one("schema"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Vec<&'a str> + 'a {
        move |name: &str| {
            pairs
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
                .collect()
        }
    }

    #[test]
    fn reads_trino_and_legacy_presto_headers() {
        let h = [
            ("x-trino-user", "alice"),
            ("x-trino-source", "jdbc#tableau"),
            ("x-trino-client-tags", "hipri, etl"),
            (
                "x-trino-session",
                "simulate_duration_ms=500, simulate_memory_bytes=1024",
            ),
            ("x-trino-session", "query_priority=3"),
            ("x-trino-original-user", "admin"),
        ];
        let info = client_info(headers(&h)).unwrap();
        assert_eq!(info.user, "alice");
        assert_eq!(info.original_user.as_deref(), Some("admin"));
        assert_eq!(info.source.as_deref(), Some("jdbc#tableau"));
        assert_eq!(info.client_tags, ["hipri", "etl"]);
        assert_eq!(info.session["simulate_memory_bytes"], "1024");
        assert_eq!(info.session["query_priority"], "3");
        let legacy = [("x-presto-user", "bob"), ("x-presto-session", "a=1")];
        let info = client_info(headers(&legacy)).unwrap();
        assert_eq!(
            (info.user.as_str(), info.session["a"].as_str()),
            ("bob", "1")
        );
    }

    #[test]
    fn a_user_is_required_and_sessions_must_be_pairs() {
        assert_eq!(client_info(headers(&[])), Err(HeaderError::MissingUser));
        let h = [("x-trino-user", "a"), ("x-trino-session", "nonsense")];
        assert!(matches!(
            client_info(headers(&h)),
            Err(HeaderError::BadSession { .. })
        ));
    }

    #[test]
    fn resource_estimates_are_read_from_one_or_several_headers() {
        let one = [
            ("x-trino-user", "a"),
            (
                "x-trino-resource-estimate",
                "EXECUTION_TIME=1h, CPU_TIME=10s,peak_memory=4GB",
            ),
        ];
        let e = client_info(headers(&one)).unwrap().resource_estimates;
        assert_eq!(e.execution_time_ms, Some(3_600_000));
        assert_eq!(e.cpu_time_ms, Some(10_000));
        assert_eq!(e.peak_memory_bytes, Some(4 << 30));
        let several = [
            ("x-trino-user", "a"),
            ("x-trino-resource-estimate", "EXECUTION_TIME=5m"),
            ("x-trino-resource-estimate", "PEAK_MEMORY=512MB"),
        ];
        let e = client_info(headers(&several)).unwrap().resource_estimates;
        assert_eq!(
            (e.execution_time_ms, e.cpu_time_ms, e.peak_memory_bytes),
            (Some(300_000), None, Some(512 << 20))
        );
        assert_eq!(
            client_info(headers(&[("x-trino-user", "a")]))
                .unwrap()
                .resource_estimates,
            ResourceEstimates::default()
        );
        for bad in [
            "EXECUTION_TIME",
            "CPU_TIME=soon",
            "PEAK_MEMORY=50%",
            "DISK=1GB",
        ] {
            let h = [("x-trino-user", "a"), ("x-trino-resource-estimate", bad)];
            let e = client_info(headers(&h)).unwrap_err();
            assert!(
                matches!(e, HeaderError::BadResourceEstimate(_))
                    && e.to_string().starts_with("X-Trino-Resource-Estimate: "),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn errors_carry_trinos_names_and_codes() {
        let e = QueryError::new(
            ErrorKind::QueryQueueFull,
            "Too many queued queries for \"g\"",
        );
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["errorName"], "QUERY_QUEUE_FULL");
        assert_eq!(json["errorCode"], 131074);
        assert_eq!(json["errorType"], "INSUFFICIENT_RESOURCES");
        assert_eq!(ErrorKind::ClusterOutOfMemory.trino().1, 131076);
        assert_eq!(
            ErrorKind::ExceededTimeLimit.trino(),
            ("EXCEEDED_TIME_LIMIT", 131075, "INSUFFICIENT_RESOURCES")
        );
        assert_eq!(
            ErrorKind::QueryRejected.trino(),
            ("QUERY_REJECTED", 31, "USER_ERROR")
        );
    }
}
