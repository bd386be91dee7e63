//! SQL execution for workers: a query runs with polars in a process of its
//! own (so its memory and CPU are measured, and a kill frees them), over
//! the worker's catalogs, and its result is written in Trino's types and
//! JSON encoding, page by page.
//!
//! - [`job`]: one query's run and the spool its result goes through.
//! - [`catalog`]: `tpch`, `files`, `system`, and `information_schema`.
//! - [`tpch`]: TPC-H tables generated once and cached as Parquet.
//! - [`encode`]: polars types and values as Trino's.
//! - [`error`]: failures by Trino's error names.

pub mod catalog;
pub mod encode;
pub mod error;
pub mod job;
pub mod tpch;

pub use catalog::CatalogConfig;
pub use error::EngineError;
pub use job::{Job, Outcome, Summary};
