//! One query's run, in the process the worker starts for it, and the
//! spool directory through which the result goes back: the worker serves
//! its pages, and removes it when the coordinator has them.
//!
//! ```text
//! <spool>/page-000000.json ...   rows of each page, in Trino's encoding
//! <spool>/summary.json           columns, row and page counts (written last)
//! <spool>/error.json             or: why the query failed
//! <spool>/usage.json             the process's CPU time and peak memory
//! ```
//! A process that ends leaving neither file crashed.

use std::path::{Path, PathBuf};

use common::api::{Column, ResultPage, SqlWork};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use trino_sql::{Analyzed, SessionPath};

use crate::catalog::{CatalogConfig, Catalogs};
use crate::error::{from_polars, EngineError};

/// What the worker hands its query process (on stdin, as JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub work: SqlWork,
    pub catalogs: CatalogConfig,
    pub spool: PathBuf,
}

/// A finished query's result, as `summary.json` holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub columns: Vec<Column>,
    pub rows: u64,
    pub pages: u32,
}

/// The file holding a query process's [`ProcessUsage`].
pub const USAGE_FILE: &str = "usage.json";

/// A query process's own account of what it used (`getrusage`), written
/// as it ends: exact where sampling from outside would miss the last
/// moments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessUsage {
    pub cpu_ms: u64,
    pub peak_resident_bytes: u64,
}

impl ProcessUsage {
    pub fn of_this_process() -> ProcessUsage {
        // SAFETY: getrusage fills the struct it is given; nothing else.
        let mut r: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut r) };
        let ms = |t: libc::timeval| t.tv_sec as u64 * 1000 + t.tv_usec as u64 / 1000;
        ProcessUsage {
            cpu_ms: ms(r.ru_utime) + ms(r.ru_stime),
            // Linux gives it in KiB.
            peak_resident_bytes: r.ru_maxrss as u64 * 1024,
        }
    }
}

/// How a query process ended, read from its spool.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Finished(Summary),
    Failed(EngineError),
    /// Neither file: the process died before it could say.
    Crashed,
}

/// About this many bytes of JSON per page (Trino's clients take pages of
/// about a megabyte).
pub const PAGE_BYTES: usize = 1 << 20;

/// polars' own deprecation notices (its SQL front end casts date literals
/// from strings) are not the user's: dropped; other warnings go to stderr.
fn quiet_deprecations() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        polars::error::set_warning_function(|message, warning| {
            if !matches!(warning, polars::error::PolarsWarning::Deprecation) {
                eprintln!("{warning:?}: {message}");
            }
        })
    });
}

/// Runs the query to a DataFrame.
pub fn execute(work: &SqlWork, config: &CatalogConfig) -> Result<DataFrame, EngineError> {
    quiet_deprecations();
    let path = SessionPath {
        catalog: work.catalog.clone(),
        schema: work.schema.clone(),
    };
    let query = match trino_sql::analyze(&work.sql, &path)? {
        Analyzed::Query(q) => q,
        Analyzed::Use { .. } => {
            return Err(EngineError::internal(
                "USE is the coordinator's to answer, not a worker's",
            ))
        }
    };
    let catalogs = Catalogs {
        config,
        system_tables: &work.system_tables,
    };
    if let Some(t) = &query.must_exist {
        catalogs.columns(t)?;
    }
    let mut context = polars::sql::SQLContext::new();
    for (name, table) in &query.tables {
        context.register(name, catalogs.scan(table)?);
    }
    // The executor cannot compare with a subquery: each that runs on its
    // own (uncorrelated) runs first, and its value takes its place.
    let sql = trino_sql::inline_scalar_subqueries(&query.sql, |sub| {
        match context.execute(sub).and_then(LazyFrame::collect) {
            Ok(df) => scalar_literal(&df).map(Some),
            Err(_) => Ok(None),
        }
    })
    .map_err(|e| match e {
        trino_sql::InlineError::Parse(e) => e.into(),
        trino_sql::InlineError::Evaluate(e) => e,
        trino_sql::InlineError::Literal(e) => {
            EngineError::internal(format!("a subquery's value: {}", e.message))
        }
    })?;
    let frame = context.execute(&sql).map_err(from_polars)?;
    frame.collect().map_err(from_polars)
}

/// A scalar subquery's answer as a SQL literal (Trino's rules: no row is
/// NULL, more than one is an error).
fn scalar_literal(df: &DataFrame) -> Result<String, EngineError> {
    if df.width() != 1 {
        return Err(EngineError::new(
            "GENERIC_USER_ERROR",
            format!("a scalar subquery returns one column, not {}", df.width()),
        ));
    }
    match df.height() {
        0 => return Ok("NULL".into()),
        1 => {}
        _ => {
            return Err(EngineError::new(
                "SUBQUERY_MULTIPLE_ROWS",
                "Scalar sub-query has returned multiple rows",
            ))
        }
    }
    let column = df.columns()[0].as_materialized_series();
    let value = crate::encode::values(column)?
        .into_iter()
        .next()
        .unwrap_or(serde_json::Value::Null);
    let quoted = |s: &str| format!("'{}'", s.replace('\'', "''"));
    Ok(match (column.dtype(), &value) {
        (_, serde_json::Value::Null) => "NULL".into(),
        (DataType::Date, serde_json::Value::String(s)) => format!("DATE {}", quoted(s)),
        (DataType::Datetime(..), serde_json::Value::String(s)) => {
            format!("TIMESTAMP {}", quoted(s))
        }
        (DataType::Decimal(..), serde_json::Value::String(s)) => s.clone(),
        (DataType::Float32 | DataType::Float64, serde_json::Value::String(s)) => {
            format!("CAST({} AS DOUBLE)", quoted(s))
        }
        (_, serde_json::Value::String(s)) => quoted(s),
        (_, serde_json::Value::Bool(b)) => b.to_string().to_uppercase(),
        (_, serde_json::Value::Number(n)) => n.to_string(),
        (other, v) => {
            return Err(EngineError::not_supported(format!(
                "a scalar subquery of type {other} ({v})"
            )))
        }
    })
}

/// Runs the job and leaves its outcome in the spool.
pub fn run(job: &Job) -> Result<Summary, EngineError> {
    let outcome = execute(&job.work, &job.catalogs).and_then(|df| write_result(&job.spool, &df));
    if let Err(e) = &outcome {
        write_json(&job.spool.join("error.json"), e)?;
    }
    write_json(
        &job.spool.join(USAGE_FILE),
        &ProcessUsage::of_this_process(),
    )?;
    outcome
}

fn io(what: &str, path: &Path, e: std::io::Error) -> EngineError {
    EngineError::internal(format!("cannot {what} {}: {e}", path.display()))
}

/// Writes `value` to `path` through a temporary file and a rename.
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), EngineError> {
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec(value)
        .map_err(|e| EngineError::internal(format!("cannot encode {}: {e}", path.display())))?;
    std::fs::write(&tmp, bytes).map_err(|e| io("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("rename", &tmp, e))
}

fn page_path(spool: &Path, page: u32) -> PathBuf {
    spool.join(format!("page-{page:06}.json"))
}

fn write_result(spool: &Path, df: &DataFrame) -> Result<Summary, EngineError> {
    let columns = crate::encode::columns(df)?;
    let height = df.height();
    // Rows per page from the size of the first rows.
    let sample = crate::encode::rows(&df.slice(0, height.min(100)))?;
    let sample_bytes = serde_json::to_vec(&sample).map(|b| b.len()).unwrap_or(0);
    let per_row = (sample_bytes / sample.len().max(1)).max(1);
    let rows_per_page = (PAGE_BYTES / per_row).clamp(1, 100_000);
    let mut pages = 0u32;
    let mut offset = 0usize;
    while offset < height {
        let rows = crate::encode::rows(&df.slice(offset as i64, rows_per_page))?;
        offset += rows.len();
        write_json(&page_path(spool, pages), &rows)?;
        pages += 1;
    }
    let summary = Summary {
        columns,
        rows: height as u64,
        pages,
    };
    write_json(&spool.join("summary.json"), &summary)?;
    Ok(summary)
}

/// What the query process left in `spool`.
pub fn outcome(spool: &Path) -> Outcome {
    let read = |name: &str| std::fs::read(spool.join(name)).ok();
    if let Some(bytes) = read("summary.json") {
        if let Ok(s) = serde_json::from_slice(&bytes) {
            return Outcome::Finished(s);
        }
    }
    if let Some(bytes) = read("error.json") {
        if let Ok(e) = serde_json::from_slice(&bytes) {
            return Outcome::Failed(e);
        }
    }
    Outcome::Crashed
}

/// What the query process said it used, if it got to say.
pub fn usage(spool: &Path) -> Option<ProcessUsage> {
    serde_json::from_slice(&std::fs::read(spool.join(USAGE_FILE)).ok()?).ok()
}

/// Page `page` of a finished query's result.
pub fn page(spool: &Path, summary: &Summary, page: u32) -> Result<ResultPage, EngineError> {
    let rows = if summary.pages == 0 && page == 0 {
        Vec::new()
    } else if page < summary.pages {
        let path = page_path(spool, page);
        let bytes = std::fs::read(&path).map_err(|e| io("read", &path, e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| EngineError::internal(format!("{}: {e}", path.display())))?
    } else {
        return Err(EngineError::new(
            "NOT_FOUND",
            format!("no page {page}: the result has {}", summary.pages),
        ));
    };
    Ok(ResultPage {
        columns: summary.columns.clone(),
        rows,
        next_page: (page + 1 < summary.pages).then_some(page + 1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work(sql: &str) -> SqlWork {
        SqlWork {
            sql: sql.into(),
            catalog: Some("tpch".into()),
            schema: Some("tiny".into()),
            system_tables: Vec::new(),
        }
    }

    #[test]
    fn a_query_runs_to_a_spooled_result_and_errors_have_trinos_names() {
        let dir = tempfile::tempdir().unwrap();
        let config = CatalogConfig {
            tpch_cache: dir.path().join("tpch"),
            files_dir: None,
        };
        let spool = dir.path().join("spool");
        std::fs::create_dir_all(&spool).unwrap();
        let job = Job {
            work: work(
                "SELECT regionkey, count(*) AS n FROM nation GROUP BY regionkey ORDER BY regionkey",
            ),
            catalogs: config.clone(),
            spool: spool.clone(),
        };
        let summary = run(&job).unwrap();
        assert_eq!(summary.rows, 5);
        assert_eq!(outcome(&spool), Outcome::Finished(summary.clone()));
        let p = page(&spool, &summary, 0).unwrap();
        assert_eq!(p.rows[0], vec![serde_json::json!(0), serde_json::json!(5)]);
        assert_eq!(
            p.columns
                .iter()
                .map(|c| c.type_name.as_str())
                .collect::<Vec<_>>(),
            ["bigint", "bigint"]
        );
        assert_eq!(p.next_page, None);
        for (sql, name) in [
            ("SELECT * FROM nope", "TABLE_NOT_FOUND"),
            ("SELECT * FROM tpch.nope.nation", "SCHEMA_NOT_FOUND"),
            ("SELECT * FROM nope.tiny.nation", "CATALOG_NOT_FOUND"),
            ("SELECT nope FROM nation", "COLUMN_NOT_FOUND"),
            ("SELECT * FROM", "SYNTAX_ERROR"),
            ("DESCRIBE nope", "TABLE_NOT_FOUND"),
            (
                "SELECT name FROM nation WHERE nationkey = (SELECT nationkey FROM nation)",
                "SUBQUERY_MULTIPLE_ROWS",
            ),
        ] {
            let e = execute(&work(sql), &config).unwrap_err();
            assert_eq!(e.name, name, "{sql}: {e}");
        }
        let above = execute(
            &work(
                "SELECT count(*) FROM nation WHERE regionkey > (SELECT avg(regionkey) FROM region)",
            ),
            &config,
        )
        .unwrap();
        assert_eq!(
            crate::encode::rows(&above).unwrap(),
            vec![vec![serde_json::json!(10)]]
        );
        let described = execute(&work("DESCRIBE nation"), &config).unwrap();
        assert_eq!(described.height(), 4);
        let tables = execute(&work("SHOW TABLES"), &config).unwrap();
        assert_eq!(tables.height(), 8);
        let catalogs = execute(&work("SHOW CATALOGS"), &config).unwrap();
        assert_eq!(catalogs.height(), 2);
    }
}

#[cfg(test)]
mod files_catalog {
    use super::*;

    #[test]
    fn parquet_and_csv_files_are_tables_of_their_directorys_schema() {
        let dir = tempfile::tempdir().unwrap();
        let sales = dir.path().join("data").join("Sales");
        std::fs::create_dir_all(&sales).unwrap();
        std::fs::write(
            sales.join("Regions.csv"),
            "id,name,opened\n1,north,2024-01-02\n2,south,2023-05-06\n",
        )
        .unwrap();
        let mut df = polars::df!("id" => [1i64, 2, 2], "amount" => [10.5, 20.0, 1.5]).unwrap();
        let file = std::fs::File::create(sales.join("orders.parquet")).unwrap();
        ParquetWriter::new(file).finish(&mut df).unwrap();
        std::fs::write(sales.join("notes.txt"), "not a table").unwrap();
        let config = CatalogConfig {
            tpch_cache: dir.path().join("tpch"),
            files_dir: Some(dir.path().join("data")),
        };
        let run = |sql: &str| {
            let work = SqlWork {
                sql: sql.into(),
                catalog: Some("files".into()),
                schema: Some("sales".into()),
                system_tables: Vec::new(),
            };
            execute(&work, &config).and_then(|df| crate::encode::rows(&df))
        };
        assert_eq!(
            run("SHOW TABLES").unwrap(),
            vec![
                vec![serde_json::json!("orders")],
                vec![serde_json::json!("regions")]
            ]
        );
        assert_eq!(
            run("SELECT r.name, sum(o.amount) AS total FROM orders o JOIN regions r ON o.id = r.id GROUP BY r.name ORDER BY r.name")
                .unwrap(),
            vec![
                vec![serde_json::json!("north"), serde_json::json!(10.5)],
                vec![serde_json::json!("south"), serde_json::json!(21.5)],
            ]
        );
        assert_eq!(
            run("DESCRIBE regions").unwrap(),
            vec![
                vec![
                    serde_json::json!("id"),
                    serde_json::json!("bigint"),
                    serde_json::json!(""),
                    serde_json::json!("")
                ],
                vec![
                    serde_json::json!("name"),
                    serde_json::json!("varchar"),
                    serde_json::json!(""),
                    serde_json::json!("")
                ],
                vec![
                    serde_json::json!("opened"),
                    serde_json::json!("date"),
                    serde_json::json!(""),
                    serde_json::json!("")
                ],
            ]
        );
        assert_eq!(
            run("SELECT * FROM notes").unwrap_err().name,
            "TABLE_NOT_FOUND"
        );
        assert_eq!(
            run("SELECT * FROM files.nope.t").unwrap_err().name,
            "SCHEMA_NOT_FOUND"
        );
        let catalogs = run("SHOW CATALOGS").unwrap();
        assert_eq!(catalogs.len(), 3, "{catalogs:?}");
    }
}

#[cfg(test)]
mod tpch_queries {
    use super::*;

    /// Every TPC-H query runs, or fails naming what it does not support
    /// (the comparison of the answers with DuckDB's is `jepsen/tpch`'s).
    #[test]
    fn each_tpch_query_runs_or_is_not_supported() {
        let dir = tempfile::tempdir().unwrap();
        let config = CatalogConfig {
            tpch_cache: dir.path().join("tpch"),
            files_dir: None,
        };
        let queries = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../jepsen/tpch/queries");
        let mut report = Vec::new();
        for n in 1..=22 {
            let sql = std::fs::read_to_string(queries.join(format!("q{n:02}.sql"))).unwrap();
            let work = SqlWork {
                sql,
                catalog: Some("tpch".into()),
                schema: Some("tiny".into()),
                system_tables: Vec::new(),
            };
            match execute(&work, &config) {
                Ok(df) => report.push(format!("q{n:02} ok {} rows", df.height())),
                Err(e) => report.push(format!(
                    "q{n:02} {}: {}",
                    e.name,
                    e.message.chars().take(150).collect::<String>()
                )),
            }
        }
        println!("{}", report.join("\n"));
        let bad: Vec<&String> = report
            .iter()
            .filter(|r| !r.contains(" ok ") && !r.contains("NOT_SUPPORTED"))
            .collect();
        assert!(bad.is_empty(), "{bad:#?}");
    }
}
