//! The catalogs a worker serves, and each one's `information_schema`.
//!
//! - `tpch`: generated TPC-H data ([`crate::tpch`]).
//! - `files`: the directory given with `--catalog-dir`, one schema per
//!   subdirectory, one table per `.parquet` or `.csv` file (named by the
//!   file's stem, in lower case; a CSV file has a header row).
//! - `system`: `metadata.catalogs`, and `runtime.nodes` and
//!   `runtime.queries`, whose rows the coordinator sends with the task.

use std::path::{Path, PathBuf};

use common::api::{ColumnValues, InlineTable, TrinoType, RUNTIME_TABLES};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use trino_sql::TableName;

use crate::error::{from_polars, EngineError};

pub const TPCH: &str = "tpch";
pub const FILES: &str = "files";
pub const SYSTEM: &str = "system";
pub const INFORMATION_SCHEMA: &str = "information_schema";

/// Where a worker's catalogs live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogConfig {
    /// The generated TPC-H tables, `<cache>/<schema>/<table>.parquet`.
    pub tpch_cache: PathBuf,
    /// The `files` catalog, if the worker has one.
    pub files_dir: Option<PathBuf>,
}

pub struct Catalogs<'a> {
    pub config: &'a CatalogConfig,
    /// `system.runtime.*` rows from the coordinator.
    pub system_tables: &'a [InlineTable],
}

fn not_found(kind: &str, what: String) -> EngineError {
    let name = match kind {
        "Catalog" => "CATALOG_NOT_FOUND",
        "Schema" => "SCHEMA_NOT_FOUND",
        _ => "TABLE_NOT_FOUND",
    };
    EngineError::new(name, format!("{kind} '{what}' does not exist"))
}

impl Catalogs<'_> {
    pub fn names(&self) -> Vec<String> {
        let mut names = vec![SYSTEM.to_string(), TPCH.to_string()];
        if self.config.files_dir.is_some() {
            names.push(FILES.to_string());
        }
        names.sort();
        names
    }

    fn check_catalog(&self, catalog: &str) -> Result<(), EngineError> {
        if self.names().iter().any(|n| n == catalog) {
            Ok(())
        } else {
            Err(not_found("Catalog", catalog.to_string()))
        }
    }

    pub fn schemas(&self, catalog: &str) -> Result<Vec<String>, EngineError> {
        self.check_catalog(catalog)?;
        let mut schemas: Vec<String> = match catalog {
            TPCH => crate::tpch::SCHEMAS
                .iter()
                .map(|(s, _)| s.to_string())
                .collect(),
            SYSTEM => vec!["metadata".into(), "runtime".into()],
            _ => {
                let dir = self.files_dir()?;
                let entries = std::fs::read_dir(dir).map_err(|e| {
                    EngineError::internal(format!("cannot read {}: {e}", dir.display()))
                })?;
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.path().is_dir())
                    .filter_map(|e| e.file_name().to_str().map(str::to_lowercase))
                    .collect()
            }
        };
        schemas.push(INFORMATION_SCHEMA.to_string());
        schemas.sort();
        schemas.dedup();
        Ok(schemas)
    }

    fn check_schema(&self, catalog: &str, schema: &str) -> Result<(), EngineError> {
        if self.schemas(catalog)?.iter().any(|s| s == schema) {
            Ok(())
        } else {
            Err(not_found("Schema", format!("{catalog}.{schema}")))
        }
    }

    fn files_dir(&self) -> Result<&Path, EngineError> {
        self.config
            .files_dir
            .as_deref()
            .ok_or_else(|| not_found("Catalog", FILES.to_string()))
    }

    /// The files of a `files` schema: (table, path), by table name.
    fn files(&self, schema: &str) -> Result<Vec<(String, PathBuf)>, EngineError> {
        let root = self.files_dir()?;
        let entries = std::fs::read_dir(root)
            .map_err(|e| EngineError::internal(format!("cannot read {}: {e}", root.display())))?;
        let Some(dir) = entries.filter_map(Result::ok).map(|e| e.path()).find(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .map(str::to_lowercase)
                    .as_deref()
                    == Some(schema)
        }) else {
            return Err(not_found("Schema", format!("{FILES}.{schema}")));
        };
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| EngineError::internal(format!("cannot read {}: {e}", dir.display())))?;
        let mut files: Vec<(String, PathBuf)> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("parquet" | "csv")
                )
            })
            .filter_map(|p| {
                let stem = p.file_stem()?.to_str()?.to_lowercase();
                Some((stem, p))
            })
            .collect();
        files.sort();
        Ok(files)
    }

    pub fn tables(&self, catalog: &str, schema: &str) -> Result<Vec<String>, EngineError> {
        self.check_schema(catalog, schema)?;
        if schema == INFORMATION_SCHEMA {
            return Ok(vec!["columns".into(), "schemata".into(), "tables".into()]);
        }
        Ok(match (catalog, schema) {
            (TPCH, _) => crate::tpch::tables()
                .iter()
                .map(|(t, _)| t.to_string())
                .collect(),
            (SYSTEM, "metadata") => vec!["catalogs".into()],
            (SYSTEM, _) => RUNTIME_TABLES.iter().map(|(t, _)| t.to_string()).collect(),
            _ => {
                let mut names: Vec<String> =
                    self.files(schema)?.into_iter().map(|(t, _)| t).collect();
                names.dedup();
                names
            }
        })
    }

    /// The table's columns and their Trino types; `TABLE_NOT_FOUND` for
    /// no such table.
    pub fn columns(&self, t: &TableName) -> Result<Vec<(String, TrinoType)>, EngineError> {
        if !self.tables(&t.catalog, &t.schema)?.contains(&t.table) {
            return Err(not_found("Table", t.to_string()));
        }
        self.columns_of_listed(t)
    }

    /// [`Catalogs::columns`] of a table just listed (no second listing).
    fn columns_of_listed(&self, t: &TableName) -> Result<Vec<(String, TrinoType)>, EngineError> {
        let owned = |cols: &[(&str, TrinoType)]| {
            cols.iter()
                .map(|(n, ty)| (n.to_string(), ty.clone()))
                .collect()
        };
        Ok(match (t.catalog.as_str(), t.schema.as_str()) {
            (_, INFORMATION_SCHEMA) => owned(&information_schema_columns(&t.table)),
            (TPCH, _) => crate::tpch::columns_of(&t.table)
                .map(|c| owned(&c))
                .unwrap_or_default(),
            (SYSTEM, "metadata") => owned(&catalogs_columns()),
            (SYSTEM, _) => RUNTIME_TABLES
                .iter()
                .find(|(name, _)| *name == t.table)
                .map(|(_, cols)| {
                    cols.iter()
                        .map(|(n, k)| (n.to_string(), k.trino()))
                        .collect()
                })
                .unwrap_or_default(),
            _ => {
                let schema = self.scan(t)?.collect_schema().map_err(from_polars)?;
                schema
                    .iter()
                    .map(|(n, d)| Ok((n.to_string(), crate::encode::trino_type(d)?)))
                    .collect::<Result<_, EngineError>>()?
            }
        })
    }

    /// The table's rows, lazily.
    pub fn scan(&self, t: &TableName) -> Result<LazyFrame, EngineError> {
        self.check_catalog(&t.catalog)?;
        if t.schema == INFORMATION_SCHEMA {
            self.check_schema(&t.catalog, &t.schema)?;
            return self.information_schema(&t.catalog, &t.table);
        }
        match t.catalog.as_str() {
            TPCH => {
                if crate::tpch::scale_of(&t.schema).is_none() {
                    return Err(not_found("Schema", format!("{TPCH}.{}", t.schema)));
                }
                let path = crate::tpch::ensure(&self.config.tpch_cache, &t.schema, &t.table)?;
                scan_parquet(&path)
            }
            SYSTEM => self.system(t),
            _ => {
                let files = self.files(&t.schema)?;
                let mut matching = files.iter().filter(|(name, _)| *name == t.table);
                let (Some((_, path)), None) = (matching.next(), matching.next()) else {
                    return Err(if files.iter().any(|(n, _)| *n == t.table) {
                        EngineError::new(
                            "GENERIC_USER_ERROR",
                            format!("Table '{t}' is ambiguous: a .parquet and a .csv file have its name"),
                        )
                    } else {
                        not_found("Table", t.to_string())
                    });
                };
                match path.extension().and_then(|e| e.to_str()) {
                    Some("csv") => LazyCsvReader::new(PlRefPath::new(path_str(path)?))
                        .with_has_header(true)
                        .with_try_parse_dates(true)
                        .finish()
                        .map_err(from_polars),
                    _ => scan_parquet(path),
                }
            }
        }
    }

    fn system(&self, t: &TableName) -> Result<LazyFrame, EngineError> {
        match (t.schema.as_str(), t.table.as_str()) {
            ("metadata", "catalogs") => {
                // Each catalog is its own connector here.
                let names = self.names();
                frame(vec![
                    Column::new("catalog_name".into(), names.clone()),
                    Column::new("connector_id".into(), names.clone()),
                    Column::new("connector_name".into(), names),
                ])
            }
            ("runtime", table) => {
                let Some((_, columns)) = RUNTIME_TABLES.iter().find(|(n, _)| *n == table) else {
                    return Err(not_found("Table", t.to_string()));
                };
                let sent = self
                    .system_tables
                    .iter()
                    .find(|s| s.schema == "runtime" && s.table == table);
                let mut out = Vec::new();
                for (name, kind) in columns.iter() {
                    let values = sent
                        .and_then(|s| s.columns.iter().find(|c| c.name == *name))
                        .map(|c| &c.values);
                    if values.is_some_and(|v| v.kind() != *kind) {
                        return Err(EngineError::internal(format!(
                            "system.runtime.{table}.{name}: the coordinator sent the wrong type"
                        )));
                    }
                    out.push(inline_column(name, *kind, values)?);
                }
                frame(out)
            }
            _ => Err(not_found("Table", t.to_string())),
        }
    }

    fn information_schema(&self, catalog: &str, table: &str) -> Result<LazyFrame, EngineError> {
        let schemas = self.schemas(catalog)?;
        match table {
            "schemata" => frame(vec![
                Column::new(
                    "catalog_name".into(),
                    vec![catalog.to_string(); schemas.len()],
                ),
                Column::new("schema_name".into(), schemas),
            ]),
            "tables" | "columns" => {
                let mut names: Vec<TableName> = Vec::new();
                for schema in &schemas {
                    for table in self.tables(catalog, schema)? {
                        names.push(TableName {
                            catalog: catalog.to_string(),
                            schema: schema.clone(),
                            table,
                        });
                    }
                }
                if table == "tables" {
                    let n = names.len();
                    return frame(vec![
                        Column::new("table_catalog".into(), vec![catalog.to_string(); n]),
                        Column::new(
                            "table_schema".into(),
                            names.iter().map(|t| t.schema.clone()).collect::<Vec<_>>(),
                        ),
                        Column::new(
                            "table_name".into(),
                            names.iter().map(|t| t.table.clone()).collect::<Vec<_>>(),
                        ),
                        Column::new("table_type".into(), vec!["BASE TABLE".to_string(); n]),
                    ]);
                }
                let (mut schema, mut tbl, mut column, mut position, mut ty) =
                    (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
                for t in &names {
                    for (i, (name, trino)) in self.columns_of_listed(t)?.into_iter().enumerate() {
                        schema.push(t.schema.clone());
                        tbl.push(t.table.clone());
                        column.push(name);
                        position.push(i as i64 + 1);
                        ty.push(trino.name());
                    }
                }
                let n = column.len();
                frame(vec![
                    Column::new("table_catalog".into(), vec![catalog.to_string(); n]),
                    Column::new("table_schema".into(), schema),
                    Column::new("table_name".into(), tbl),
                    Column::new("column_name".into(), column),
                    Column::new("ordinal_position".into(), position),
                    Column::new("column_default".into(), vec![None::<String>; n]),
                    Column::new("is_nullable".into(), vec!["YES".to_string(); n]),
                    Column::new("data_type".into(), ty),
                ])
            }
            _ => Err(not_found(
                "Table",
                format!("{catalog}.{INFORMATION_SCHEMA}.{table}"),
            )),
        }
    }
}

fn information_schema_columns(table: &str) -> Vec<(&'static str, TrinoType)> {
    let v = || TrinoType::Varchar(None);
    match table {
        "schemata" => vec![("catalog_name", v()), ("schema_name", v())],
        "tables" => vec![
            ("table_catalog", v()),
            ("table_schema", v()),
            ("table_name", v()),
            ("table_type", v()),
        ],
        _ => vec![
            ("table_catalog", v()),
            ("table_schema", v()),
            ("table_name", v()),
            ("column_name", v()),
            ("ordinal_position", TrinoType::Bigint),
            ("column_default", v()),
            ("is_nullable", v()),
            ("data_type", v()),
        ],
    }
}

fn catalogs_columns() -> Vec<(&'static str, TrinoType)> {
    let v = || TrinoType::Varchar(None);
    vec![
        ("catalog_name", v()),
        ("connector_id", v()),
        ("connector_name", v()),
    ]
}

fn path_str(path: &Path) -> Result<&str, EngineError> {
    path.to_str()
        .ok_or_else(|| EngineError::internal(format!("{} is not UTF-8", path.display())))
}

fn scan_parquet(path: &Path) -> Result<LazyFrame, EngineError> {
    LazyFrame::scan_parquet(PlRefPath::new(path_str(path)?), ScanArgsParquet::default())
        .map_err(from_polars)
}

fn frame(columns: Vec<Column>) -> Result<LazyFrame, EngineError> {
    DataFrame::new_infer_height(columns)
        .map(IntoLazy::lazy)
        .map_err(from_polars)
}

/// A column of an inline table (no values: an empty column of its type).
fn inline_column(
    name: &str,
    kind: common::api::InlineType,
    values: Option<&ColumnValues>,
) -> Result<Column, EngineError> {
    use common::api::InlineType as K;
    let name = PlSmallStr::from(name);
    let column = match (kind, values) {
        (K::Varchar, Some(ColumnValues::Varchar(v))) => Column::new(name, v.clone()),
        (K::Varchar, _) => Column::new(name, Vec::<Option<String>>::new()),
        (K::Bigint, Some(ColumnValues::Bigint(v))) => Column::new(name, v.clone()),
        (K::Bigint, _) => Column::new(name, Vec::<Option<i64>>::new()),
        (K::Boolean, Some(ColumnValues::Boolean(v))) => Column::new(name, v.clone()),
        (K::Boolean, _) => Column::new(name, Vec::<Option<bool>>::new()),
        (K::Timestamp, values) => {
            let v = match values {
                Some(ColumnValues::Timestamp(v)) => v.clone(),
                _ => Vec::new(),
            };
            Column::new(name, v)
                .cast(&DataType::Datetime(TimeUnit::Milliseconds, None))
                .map_err(from_polars)?
        }
        (K::VarcharArray, values) => {
            let rows: Vec<Option<Series>> = match values {
                Some(ColumnValues::VarcharArray(v)) => v
                    .iter()
                    .map(|r| {
                        r.as_ref()
                            .map(|items| Series::new(PlSmallStr::EMPTY, items.clone()))
                    })
                    .collect(),
                _ => Vec::new(),
            };
            let mut s = Series::new(name, rows);
            if s.is_empty() {
                s = s
                    .cast(&DataType::List(Box::new(DataType::String)))
                    .map_err(from_polars)?;
            }
            s.into_column()
        }
    };
    Ok(column)
}
