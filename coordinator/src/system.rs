//! The rows of `system.runtime.nodes` and `system.runtime.queries`: only
//! the RMs (discovery, the ledger) and this coordinator (its own queries)
//! know them, so they are built here and sent with the task of a query
//! that reads them. Another coordinator's queries show as its ledger
//! entries say (linearizable groups; an eventual-mode query lives only on
//! its coordinator).

use std::time::Instant;

use common::api::{ColumnValues, InlineColumn, InlineTable, RUNTIME_NODES, RUNTIME_QUERIES};

use crate::protocol::{ErrorKind, QueryError};
use crate::query::{Coordinator, Payload};

fn rm_error(e: common::http::HttpError) -> QueryError {
    QueryError::new(
        ErrorKind::GenericInternalError,
        format!("cannot read the cluster state for system.runtime: {e}"),
    )
}

/// Both tables, their columns in the order [`RUNTIME_NODES`] and
/// [`RUNTIME_QUERIES`] give.
pub async fn runtime_tables(c: &Coordinator) -> Result<Vec<InlineTable>, QueryError> {
    Ok(vec![nodes(c).await?, queries(c).await?])
}

fn table(
    name: &str,
    columns: Vec<ColumnValues>,
    names: &[(&str, common::api::InlineType)],
) -> InlineTable {
    InlineTable {
        schema: "runtime".into(),
        table: name.into(),
        columns: names
            .iter()
            .zip(columns)
            .map(|((n, _), values)| InlineColumn {
                name: n.to_string(),
                values,
            })
            .collect(),
    }
}

async fn nodes(c: &Coordinator) -> Result<InlineTable, QueryError> {
    let nodes = c.rms.nodes(None).await.map_err(rm_error)?;
    let some = |v: Vec<String>| v.into_iter().map(Some).collect::<Vec<_>>();
    let columns = vec![
        ColumnValues::Varchar(some(
            nodes
                .iter()
                .map(|n| n.announcement.node_id.clone())
                .collect(),
        )),
        ColumnValues::Varchar(some(
            nodes
                .iter()
                .map(|n| c.http.url(&n.announcement.addr, ""))
                .collect(),
        )),
        ColumnValues::Varchar(vec![
            Some(env!("CARGO_PKG_VERSION").to_string());
            nodes.len()
        ]),
        ColumnValues::Boolean(
            nodes
                .iter()
                .map(|n| Some(n.announcement.role == "coordinator"))
                .collect(),
        ),
        ColumnValues::Varchar(vec![Some("active".to_string()); nodes.len()]),
    ];
    Ok(table("nodes", columns, RUNTIME_NODES))
}

/// One row of `system.runtime.queries`.
#[derive(Default)]
struct Row {
    id: String,
    state: String,
    user: Option<String>,
    source: Option<String>,
    query: Option<String>,
    group: Option<Vec<String>>,
    queued_ms: Option<i64>,
    created: Option<i64>,
    started: Option<i64>,
    end: Option<i64>,
    error_type: Option<String>,
    error_code: Option<String>,
    coordinator: String,
}

async fn queries(c: &Coordinator) -> Result<InlineTable, QueryError> {
    let ledger = c.rms.ledger().await.map_err(rm_error)?;
    let now = Instant::now();
    let mut rows: Vec<Row> = Vec::new();
    let ours = c.held();
    for q in &ours {
        let s = q.snapshot();
        let wall = |t: Instant| q.wall_ms(t) as i64;
        rows.push(Row {
            id: q.id.clone(),
            state: format!("{:?}", s.state).to_uppercase(),
            user: Some(q.user.clone()),
            source: q.source.clone(),
            query: Some(q.sql.clone()),
            group: s
                .group
                .as_ref()
                .map(|g| g.split('.').map(str::to_string).collect()),
            queued_ms: Some(
                s.started
                    .or(s.ended)
                    .unwrap_or(now)
                    .saturating_duration_since(q.created)
                    .as_millis() as i64,
            ),
            created: Some(q.created_ms as i64),
            started: s.started.map(wall),
            end: s.ended.map(wall),
            error_type: s.error.as_ref().map(|e| e.error_type.clone()),
            error_code: s.error.as_ref().map(|e| e.error_name.clone()),
            coordinator: c.id.clone(),
        });
    }
    for e in ledger {
        if ours.iter().any(|q| q.id == e.query_id) {
            continue;
        }
        let payload = serde_json::from_str::<Payload>(&e.payload).ok();
        rows.push(Row {
            id: e.query_id.clone(),
            state: format!("{:?}", e.status).to_uppercase(),
            user: payload.as_ref().map(|p| p.user.clone()),
            source: payload.as_ref().and_then(|p| p.source.clone()),
            query: payload.as_ref().map(|p| p.sql.clone()),
            group: Some(e.group.split('.').map(str::to_string).collect()),
            coordinator: e.coordinator.clone(),
            ..Row::default()
        });
    }
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    let columns = vec![
        ColumnValues::Varchar(rows.iter().map(|r| Some(r.id.clone())).collect()),
        ColumnValues::Varchar(rows.iter().map(|r| Some(r.state.clone())).collect()),
        ColumnValues::Varchar(rows.iter().map(|r| r.user.clone()).collect()),
        ColumnValues::Varchar(rows.iter().map(|r| r.source.clone()).collect()),
        ColumnValues::Varchar(rows.iter().map(|r| r.query.clone()).collect()),
        ColumnValues::VarcharArray(rows.iter().map(|r| r.group.clone()).collect()),
        ColumnValues::Bigint(rows.iter().map(|r| r.queued_ms).collect()),
        ColumnValues::Timestamp(rows.iter().map(|r| r.created).collect()),
        ColumnValues::Timestamp(rows.iter().map(|r| r.started).collect()),
        ColumnValues::Timestamp(rows.iter().map(|r| r.end).collect()),
        ColumnValues::Varchar(rows.iter().map(|r| r.error_type.clone()).collect()),
        ColumnValues::Varchar(rows.iter().map(|r| r.error_code.clone()).collect()),
        ColumnValues::Varchar(rows.iter().map(|r| Some(r.coordinator.clone())).collect()),
    ];
    Ok(table("queries", columns, RUNTIME_QUERIES))
}
