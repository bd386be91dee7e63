//! Trino statements as this engine reads them. The coordinator analyzes a
//! statement before admission (a syntax error fails at once, as in Trino,
//! and the tables it reads are known); the worker's query process analyzes
//! it again to run it. Both get the same answer from the same text and
//! session path, so nothing derived crosses the wire.
//!
//! - Metadata statements (`SHOW CATALOGS|SCHEMAS|TABLES|COLUMNS`,
//!   `DESCRIBE`) become queries over the catalogs' `information_schema`
//!   and `system.metadata.catalogs`, with Trino's column titles.
//! - `USE` is answered by the coordinator (it sets the client's path).
//! - In a query, every table name is resolved against the session's
//!   catalog and schema to `catalog.schema.table` (lower case, as Trino
//!   folds names) and replaced by a plain name for the executor, aliased
//!   to the name the query used, so qualified columns keep working.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, Ident, ObjectName, ObjectNamePart, Query as AstQuery, SelectItem, SetExpr, Statement,
    TableAlias, TableFactor, VisitMut, VisitorMut,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

mod rewrite;

/// The client's current catalog and schema (`X-Trino-Catalog`,
/// `X-Trino-Schema`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionPath {
    pub catalog: Option<String>,
    pub schema: Option<String>,
}

/// A fully qualified table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableName {
    pub catalog: String,
    pub schema: String,
    pub table: String,
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.catalog, self.schema, self.table)
    }
}

/// What a statement is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Analyzed {
    /// A query to run: its text for the executor and what it reads.
    Query(ResolvedQuery),
    /// `USE [catalog.]schema`: the client's new path.
    Use { catalog: String, schema: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedQuery {
    /// The query with each table replaced by its entry in `tables`.
    pub sql: String,
    /// Executor name (as it appears in `sql`) -> the table it stands for.
    pub tables: BTreeMap<String, TableName>,
    /// `DESCRIBE`/`SHOW COLUMNS`: the table must exist (an empty answer
    /// would hide a typo), as Trino checks.
    pub must_exist: Option<TableName>,
}

/// Why a statement cannot run; each kind is one of Trino's error names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SqlError {
    pub kind: SqlErrorKind,
    pub message: String,
    /// 1-based, where the parser says.
    pub line: Option<u32>,
    pub column: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlErrorKind {
    SyntaxError,
    NotSupported,
    MissingCatalogName,
    MissingSchemaName,
}

impl SqlErrorKind {
    /// Trino's error name.
    pub fn name(self) -> &'static str {
        match self {
            SqlErrorKind::SyntaxError => "SYNTAX_ERROR",
            SqlErrorKind::NotSupported => "NOT_SUPPORTED",
            SqlErrorKind::MissingCatalogName => "MISSING_CATALOG_NAME",
            SqlErrorKind::MissingSchemaName => "MISSING_SCHEMA_NAME",
        }
    }
}

impl SqlError {
    fn new(kind: SqlErrorKind, message: impl Into<String>) -> SqlError {
        SqlError {
            kind,
            message: message.into(),
            line: None,
            column: None,
        }
    }

    fn not_supported(what: impl std::fmt::Display) -> SqlError {
        SqlError::new(
            SqlErrorKind::NotSupported,
            format!("this engine runs queries (SELECT, WITH, VALUES) and metadata statements; not supported: {what}"),
        )
    }

    /// A parser error, with the location it names ("... at Line: 1,
    /// Column: 8") moved into `line` and `column`, in Trino's message
    /// shape (`line 1:8: ...`).
    fn syntax(e: sqlparser::parser::ParserError, statement: &str) -> SqlError {
        let text = match e {
            sqlparser::parser::ParserError::TokenizerError(s)
            | sqlparser::parser::ParserError::ParserError(s) => s,
            sqlparser::parser::ParserError::RecursionLimitExceeded => {
                "the statement nests too deeply".to_string()
            }
        };
        let (message, line, column) = match text.rsplit_once(" at Line: ") {
            Some((message, at)) => {
                let mut parts = at.split(", Column: ");
                let line = parts.next().and_then(|l| l.trim().parse().ok());
                let column = parts.next().and_then(|c| c.trim().parse().ok());
                (message.to_string(), line, column)
            }
            // The parser names no place for the end of the text: it is
            // after the last character, as Trino reports it.
            None if text.contains("found: EOF") => {
                let line = statement.lines().count().max(1);
                let column = statement.lines().last().map_or(0, |l| l.chars().count()) + 1;
                (text, u32::try_from(line).ok(), u32::try_from(column).ok())
            }
            None => (text, None, None),
        };
        let message = match (line, column) {
            (Some(l), Some(c)) => format!("line {l}:{c}: {message}"),
            _ => message,
        };
        SqlError {
            kind: SqlErrorKind::SyntaxError,
            message,
            line,
            column,
        }
    }
}

/// Analyzes one statement (a trailing `;` allowed).
pub fn analyze(sql: &str, path: &SessionPath) -> Result<Analyzed, SqlError> {
    let text = sql.trim().trim_end_matches(';').trim_end();
    if text.is_empty() {
        return Err(SqlError::new(SqlErrorKind::SyntaxError, "empty statement"));
    }
    if let Some(analyzed) = metadata(text, path)? {
        return Ok(analyzed);
    }
    let query = resolve(text, path)?;
    Ok(Analyzed::Query(query))
}

/// Parses `text` as one query and resolves its tables.
fn resolve(text: &str, path: &SessionPath) -> Result<ResolvedQuery, SqlError> {
    let mut statements =
        Parser::parse_sql(&GenericDialect {}, text).map_err(|e| SqlError::syntax(e, text))?;
    if statements.len() != 1 {
        return Err(SqlError::new(
            SqlErrorKind::SyntaxError,
            format!(
                "one statement at a time, as Trino takes them; got {}",
                statements.len()
            ),
        ));
    }
    let mut statement = statements.remove(0);
    match &statement {
        Statement::Query(q) => check_query(q)?,
        other => return Err(SqlError::not_supported(statement_kind(other))),
    }
    let mut resolver = Resolver {
        path,
        ctes: BTreeSet::new(),
        tables: BTreeMap::new(),
        error: None,
    };
    let _ = statement.visit(&mut resolver);
    if let Some(e) = resolver.error {
        return Err(e);
    }
    Ok(ResolvedQuery {
        sql: statement.to_string(),
        tables: resolver.tables,
        must_exist: None,
    })
}

/// Constructs Trino has that the executor must not silently misread.
fn check_query(q: &AstQuery) -> Result<(), SqlError> {
    if let SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) =
        q.body.as_ref()
    {
        return Err(SqlError::not_supported("writes"));
    }
    Ok(())
}

/// The statement's leading keywords, for an error message.
fn statement_kind(s: &Statement) -> String {
    let text = s.to_string();
    first_words(&text, 2).join(" ").to_uppercase()
}

fn first_words(sql: &str, n: usize) -> Vec<String> {
    sql.split(|c: char| c.is_whitespace() || c == ';' || c == '(')
        .filter(|w| !w.is_empty())
        .take(n)
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Trino folds unquoted names to lower case; quoted ones are kept.
fn fold(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

struct Resolver<'a> {
    path: &'a SessionPath,
    /// Names of common table expressions: not catalog tables.
    ctes: BTreeSet<String>,
    tables: BTreeMap<String, TableName>,
    error: Option<SqlError>,
}

impl Resolver<'_> {
    fn qualify(&self, name: &ObjectName) -> Result<TableName, SqlError> {
        let mut parts = Vec::new();
        for p in &name.0 {
            match p {
                ObjectNamePart::Identifier(i) => parts.push(fold(i)),
                ObjectNamePart::Function(_) => {
                    return Err(SqlError::not_supported(format!("table name {name}")))
                }
            }
        }
        let catalog = || {
            self.path.catalog.clone().ok_or_else(|| {
                SqlError::new(
                    SqlErrorKind::MissingCatalogName,
                    format!(
                        "Catalog must be specified when session catalog is not set (table {name})"
                    ),
                )
            })
        };
        let schema = || {
            self.path.schema.clone().ok_or_else(|| {
                SqlError::new(
                    SqlErrorKind::MissingSchemaName,
                    format!(
                        "Schema must be specified when session schema is not set (table {name})"
                    ),
                )
            })
        };
        Ok(match parts.as_slice() {
            [t] => TableName {
                catalog: catalog()?,
                schema: schema()?,
                table: t.clone(),
            },
            [s, t] => TableName {
                catalog: catalog()?,
                schema: s.clone(),
                table: t.clone(),
            },
            [c, s, t] => TableName {
                catalog: c.clone(),
                schema: s.clone(),
                table: t.clone(),
            },
            _ => {
                return Err(SqlError::new(
                    SqlErrorKind::SyntaxError,
                    format!("Too many dots in table name: {name}"),
                ))
            }
        })
    }

    /// The executor's name for `table`: one per distinct table.
    fn executor_name(&mut self, table: TableName) -> String {
        if let Some((name, _)) = self.tables.iter().find(|(_, t)| **t == table) {
            return name.clone();
        }
        let name = format!("__t{}", self.tables.len());
        self.tables.insert(name.clone(), table);
        name
    }
}

impl VisitorMut for Resolver<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut AstQuery) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.ctes.insert(fold(&cte.alias.name));
            }
        }
        rewrite::rewrite(query);
        name_columns(&mut query.body);
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table {
            name, alias, args, ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        if args.is_some() {
            self.error = Some(SqlError::not_supported(format!("table function {name}")));
            return ControlFlow::Break(());
        }
        if let [ObjectNamePart::Identifier(one)] = name.0.as_slice() {
            if self.ctes.contains(&fold(one)) {
                return ControlFlow::Continue(());
            }
        }
        let table = match self.qualify(name) {
            Ok(t) => t,
            Err(e) => {
                self.error = Some(e);
                return ControlFlow::Break(());
            }
        };
        let written = table.table.clone();
        let executor = self.executor_name(table);
        if alias.is_none() {
            // `nation.name` still names the column.
            *alias = Some(TableAlias {
                explicit: true,
                name: Ident::new(written),
                columns: Vec::new(),
                at: None,
            });
        }
        *name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new(executor))]);
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        fold_decimal_constant(expr);
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        // Column names fold as table names do.
        match expr {
            Expr::Interval(interval) => trino_interval(interval),
            Expr::Identifier(i) if i.quote_style.is_none() => i.value = i.value.to_lowercase(),
            Expr::CompoundIdentifier(parts) => {
                for i in parts.iter_mut().filter(|i| i.quote_style.is_none()) {
                    i.value = i.value.to_lowercase();
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// Replaces each scalar subquery of `sql` (a resolved query) that can run
/// on its own by its value: `evaluate` gets the subquery as a standalone
/// query (with the outer query's `WITH`, which it may read) and answers
/// the value as a SQL literal, `Ok(None)` when the subquery cannot run on
/// its own (it reads the outer query's columns: correlated), or an error
/// that fails the query. Executors that cannot compare with a subquery
/// (`total > (SELECT sum(...) ...)`) can then run the query.
pub fn inline_scalar_subqueries<E>(
    sql: &str,
    mut evaluate: impl FnMut(&str) -> Result<Option<String>, E>,
) -> Result<String, InlineError<E>> {
    let mut statements = Parser::parse_sql(&GenericDialect {}, sql)
        .map_err(|e| InlineError::Parse(SqlError::syntax(e, sql)))?;
    let Some(Statement::Query(query)) = statements.first_mut() else {
        return Ok(sql.to_string());
    };
    let outer_with = query.with.clone();
    let mut inliner = Inliner {
        outer_with,
        evaluate: &mut evaluate,
        error: None,
    };
    let _ = query.visit(&mut inliner);
    if let Some(e) = inliner.error {
        return Err(e);
    }
    Ok(statements[0].to_string())
}

/// Why [`inline_scalar_subqueries`] failed.
#[derive(Debug)]
pub enum InlineError<E> {
    Parse(SqlError),
    /// The evaluation's own error, or a literal that does not parse.
    Evaluate(E),
    Literal(SqlError),
}

struct Inliner<'a, E, F: FnMut(&str) -> Result<Option<String>, E>> {
    outer_with: Option<sqlparser::ast::With>,
    evaluate: &'a mut F,
    error: Option<InlineError<E>>,
}

impl<E, F: FnMut(&str) -> Result<Option<String>, E>> VisitorMut for Inliner<'_, E, F> {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let Expr::Subquery(sub) = expr else {
            return ControlFlow::Continue(());
        };
        let mut standalone = sub.as_ref().clone();
        if standalone.with.is_none() {
            standalone.with = self.outer_with.clone();
        }
        let text = standalone.to_string();
        match (self.evaluate)(&text) {
            Ok(None) => {}
            Ok(Some(literal)) => {
                let parsed = Parser::new(&GenericDialect {})
                    .try_with_sql(&literal)
                    .and_then(|mut p| p.parse_expr());
                match parsed {
                    Ok(e) => *expr = Expr::Nested(Box::new(e)),
                    Err(e) => {
                        self.error = Some(InlineError::Literal(SqlError::syntax(e, &literal)));
                        return ControlFlow::Break(());
                    }
                }
            }
            Err(e) => {
                self.error = Some(InlineError::Evaluate(e));
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }
}

/// Names each unnamed expression of a SELECT list as Trino does: `_col`
/// and its position (`SELECT count(*)` gives `_col0`; a bare column keeps
/// its name).
fn name_columns(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => {
            for (i, item) in select.projection.iter_mut().enumerate() {
                if let SelectItem::UnnamedExpr(expr) = item {
                    if !matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) {
                        *item = SelectItem::ExprWithAlias {
                            expr: expr.clone(),
                            alias: Ident::new(format!("_col{i}")),
                        };
                    }
                }
            }
        }
        SetExpr::SetOperation { left, right, .. } => {
            name_columns(left);
            name_columns(right);
        }
        _ => {}
    }
}

/// A numeric literal as an exact decimal: (unscaled value, scale).
fn decimal(text: &str) -> Option<(i128, u32)> {
    if text.contains(['e', 'E']) {
        return None; // a double in Trino
    }
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let scale = u32::try_from(frac.len()).ok()?;
    let digits = format!("{int}{frac}");
    Some((digits.parse().ok()?, scale))
}

/// A decimal's unscaled value as text with `scale` fractional digits (how
/// Trino writes a decimal, in SQL and in its JSON values).
pub fn decimal_text(unscaled: i128, scale: u32) -> String {
    let digits = unscaled.unsigned_abs().to_string();
    let sign = if unscaled < 0 { "-" } else { "" };
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale as usize + 1);
    let (int, frac) = padded.split_at(padded.len() - scale as usize);
    format!("{sign}{int}.{frac}")
}

/// `0.06 + 0.01` computed exactly, as Trino computes decimal literals
/// (the executor would add two doubles and get 0.06999999999999999, which
/// changes what `BETWEEN 0.06 - 0.01 AND 0.06 + 0.01` selects: TPC-H Q6).
fn fold_decimal_constant(expr: &mut Expr) {
    use sqlparser::ast::{BinaryOperator as Op, Value};
    let number = |e: &Expr| -> Option<(i128, u32)> {
        let e = match e {
            Expr::Nested(inner) => inner.as_ref(),
            other => other,
        };
        match e {
            Expr::Value(v) => match &v.value {
                Value::Number(text, false) => decimal(text),
                _ => None,
            },
            _ => None,
        }
    };
    let Expr::BinaryOp { left, op, right } = expr else {
        return;
    };
    let (Some((a, sa)), Some((b, sb))) = (number(left), number(right)) else {
        return;
    };
    let scale = sa.max(sb);
    let widen = |v: i128, s: u32| v.checked_mul(10i128.checked_pow(scale - s)?);
    let (Some(a2), Some(b2)) = (widen(a, sa), widen(b, sb)) else {
        return;
    };
    let result = match op {
        Op::Plus => a2.checked_add(b2).map(|v| (v, scale)),
        Op::Minus => a2.checked_sub(b2).map(|v| (v, scale)),
        Op::Multiply => a.checked_mul(b).map(|v| (v, sa + sb)),
        _ => None,
    };
    if let Some((v, s)) = result {
        *expr = Expr::value(Value::Number(decimal_text(v, s), false));
    }
}

/// Trino's `INTERVAL '90' DAY` (a number and a unit) as the executor
/// spells it: `INTERVAL '90 days'`.
fn trino_interval(interval: &mut sqlparser::ast::Interval) {
    use sqlparser::ast::{DateTimeField as F, Value};
    let unit = match &interval.leading_field {
        Some(F::Year | F::Years) => "years",
        Some(F::Month | F::Months) => "months",
        Some(F::Week(None) | F::Weeks) => "weeks",
        Some(F::Day | F::Days) => "days",
        Some(F::Hour | F::Hours) => "hours",
        Some(F::Minute | F::Minutes) => "minutes",
        Some(F::Second | F::Seconds) => "seconds",
        _ => return,
    };
    if interval.last_field.is_some() || interval.fractional_seconds_precision.is_some() {
        return;
    }
    let Expr::Value(v) = interval.value.as_mut() else {
        return;
    };
    let Value::SingleQuotedString(n) = &v.value else {
        return;
    };
    if n.trim().parse::<i64>().is_err() {
        return;
    }
    v.value = Value::SingleQuotedString(format!("{} {unit}", n.trim()));
    interval.leading_field = None;
    interval.leading_precision = None;
}

/// A SQL string literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A name in a metadata statement: one identifier, unquoted (folded) or
/// double-quoted.
fn name_part(word: &str) -> Result<String, SqlError> {
    let w = word.trim();
    if let Some(inner) = w.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        return Ok(inner.replace("\"\"", "\""));
    }
    if w.is_empty()
        || !w
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    {
        return Err(SqlError::new(
            SqlErrorKind::SyntaxError,
            format!("not a name: {w}"),
        ));
    }
    Ok(w.to_lowercase())
}

fn dotted(word: &str) -> Result<Vec<String>, SqlError> {
    word.split('.').map(name_part).collect()
}

/// `SHOW ...`, `DESCRIBE`, `USE`: `None` for anything else.
fn metadata(text: &str, path: &SessionPath) -> Result<Option<Analyzed>, SqlError> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let lower: Vec<String> = words.iter().map(|w| w.to_ascii_lowercase()).collect();
    let lw: Vec<&str> = lower.iter().map(String::as_str).collect();
    // `LIKE 'pattern'` at the end of a SHOW.
    let like = |rest: &[&str]| -> Result<Option<String>, SqlError> {
        match rest {
            [] => Ok(None),
            [kw, pattern @ ..] if kw.eq_ignore_ascii_case("like") && !pattern.is_empty() => {
                let p = pattern.join(" ");
                match p.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
                    Some(inner) => Ok(Some(inner.replace("''", "'"))),
                    None => Err(SqlError::new(
                        SqlErrorKind::SyntaxError,
                        format!("LIKE takes a string literal; got {p}"),
                    )),
                }
            }
            other => Err(SqlError::new(
                SqlErrorKind::SyntaxError,
                format!("unexpected '{}'", other.join(" ")),
            )),
        }
    };
    let catalog_of = |given: Option<String>| -> Result<String, SqlError> {
        given.or_else(|| path.catalog.clone()).ok_or_else(|| {
            SqlError::new(
                SqlErrorKind::MissingCatalogName,
                "Catalog must be specified when session catalog is not set",
            )
        })
    };
    let query =
        |sql: String, must_exist: Option<TableName>| -> Result<Option<Analyzed>, SqlError> {
            let mut q = resolve(&sql, &SessionPath::default())?;
            q.must_exist = must_exist;
            Ok(Some(Analyzed::Query(q)))
        };
    let filter = |column: &str, pattern: Option<String>| match pattern {
        Some(p) => format!(" AND {column} LIKE {}", literal(&p)),
        None => String::new(),
    };
    match lw.as_slice() {
        ["use", target] => {
            let parts = dotted(words[1])?;
            let (catalog, schema) = match parts.as_slice() {
                [s] => (catalog_of(None)?, s.clone()),
                [c, s] => (c.clone(), s.clone()),
                _ => {
                    return Err(SqlError::new(
                        SqlErrorKind::SyntaxError,
                        format!("USE takes [catalog.]schema; got {target}"),
                    ))
                }
            };
            Ok(Some(Analyzed::Use { catalog, schema }))
        }
        ["show", "catalogs", ..] => {
            let pattern = like(&words[2..])?;
            query(
                format!(
                    "SELECT catalog_name AS \"Catalog\" FROM system.metadata.catalogs WHERE true{} ORDER BY catalog_name",
                    filter("catalog_name", pattern)
                ),
                None,
            )
        }
        ["show", "schemas", ..] => {
            let (catalog, rest) = match lw.get(2) {
                Some(&"from") | Some(&"in") if words.len() > 3 => {
                    let parts = dotted(words[3])?;
                    let [c] = parts.as_slice() else {
                        return Err(SqlError::new(
                            SqlErrorKind::SyntaxError,
                            format!("SHOW SCHEMAS FROM takes a catalog; got {}", words[3]),
                        ));
                    };
                    (c.clone(), &words[4..])
                }
                _ => (catalog_of(None)?, &words[2..]),
            };
            let pattern = like(rest)?;
            query(
                format!(
                    "SELECT schema_name AS \"Schema\" FROM {catalog}.information_schema.schemata WHERE true{} ORDER BY schema_name",
                    filter("schema_name", pattern)
                ),
                None,
            )
        }
        ["show", "tables", ..] => {
            let (catalog, schema, rest) = match lw.get(2) {
                Some(&"from") | Some(&"in") if words.len() > 3 => {
                    let parts = dotted(words[3])?;
                    match parts.as_slice() {
                        [s] => (catalog_of(None)?, s.clone(), &words[4..]),
                        [c, s] => (c.clone(), s.clone(), &words[4..]),
                        _ => {
                            return Err(SqlError::new(
                                SqlErrorKind::SyntaxError,
                                format!(
                                    "SHOW TABLES FROM takes [catalog.]schema; got {}",
                                    words[3]
                                ),
                            ))
                        }
                    }
                }
                _ => {
                    let schema = path.schema.clone().ok_or_else(|| {
                        SqlError::new(
                            SqlErrorKind::MissingSchemaName,
                            "Schema must be specified when session schema is not set",
                        )
                    })?;
                    (catalog_of(None)?, schema, &words[2..])
                }
            };
            let pattern = like(rest)?;
            query(
                format!(
                    "SELECT table_name AS \"Table\" FROM {catalog}.information_schema.tables WHERE table_schema = {}{} ORDER BY table_name",
                    literal(&schema),
                    filter("table_name", pattern)
                ),
                None,
            )
        }
        ["show", "columns", "from" | "in", _] | ["describe" | "desc", _] => {
            let raw = words[words.len() - 1];
            let parts = dotted(raw)?;
            let resolver = Resolver {
                path,
                ctes: BTreeSet::new(),
                tables: BTreeMap::new(),
                error: None,
            };
            let name = ObjectName(
                parts
                    .iter()
                    .map(|p| ObjectNamePart::Identifier(Ident::with_quote('"', p)))
                    .collect(),
            );
            let table = resolver.qualify(&name)?;
            query(
                format!(
                    "SELECT column_name AS \"Column\", data_type AS \"Type\", '' AS \"Extra\", '' AS \"Comment\" FROM {}.information_schema.columns WHERE table_schema = {} AND table_name = {} ORDER BY ordinal_position",
                    table.catalog,
                    literal(&table.schema),
                    literal(&table.table)
                ),
                Some(table),
            )
        }
        ["show", ..] | ["describe" | "desc", ..] | ["use", ..] => {
            Err(SqlError::not_supported(format!(
                "'{}'",
                words.iter().take(3).copied().collect::<Vec<_>>().join(" ")
            )))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(c: Option<&str>, s: Option<&str>) -> SessionPath {
        SessionPath {
            catalog: c.map(str::to_string),
            schema: s.map(str::to_string),
        }
    }

    fn query(sql: &str, p: &SessionPath) -> ResolvedQuery {
        match analyze(sql, p).unwrap() {
            Analyzed::Query(q) => q,
            other => panic!("{sql}: {other:?}"),
        }
    }

    #[test]
    fn tables_resolve_against_the_session_path_and_keep_their_names_as_aliases() {
        let q = query(
            "select Nation.Name, r.name from tpch.tiny.NATION join region r on nation.regionkey = r.regionkey;",
            &path(Some("tpch"), Some("sf1")),
        );
        let tables: Vec<String> = q.tables.values().map(|t| t.to_string()).collect();
        assert_eq!(tables, ["tpch.tiny.nation", "tpch.sf1.region"]);
        assert!(q.sql.contains("FROM __t0 AS nation"), "{}", q.sql);
        assert!(q.sql.contains("JOIN __t1 r"), "{}", q.sql);
        assert!(q.sql.contains("nation.name"), "{}", q.sql);
        // The same table twice is one executor table.
        let q = query(
            "select * from tiny.nation a, tiny.nation b",
            &path(Some("tpch"), None),
        );
        assert_eq!(q.tables.len(), 1);
    }

    #[test]
    fn unnamed_columns_are_named_as_trino_names_them() {
        let q = query(
            "select count(*), name, n.regionkey, 1 + 1 from nation n",
            &path(Some("tpch"), Some("tiny")),
        );
        assert!(
            q.sql
                .starts_with("SELECT count(*) AS _col0, name, n.regionkey, 2 AS _col3 FROM"),
            "{}",
            q.sql
        );
    }

    #[test]
    fn decimal_literals_are_computed_exactly() {
        let q = query(
            "select * from t where d between 0.06 - 0.01 and 0.06 + 0.01 and q < (20 + 4) * 1.5 and x > 1e1 - 1",
            &path(Some("tpch"), Some("tiny")),
        );
        assert!(
            q.sql.contains("BETWEEN 0.05 AND 0.07") && q.sql.contains("q < 36.0"),
            "{}",
            q.sql
        );
        assert!(q.sql.contains("1e1 - 1"), "a double stays: {}", q.sql);
    }

    #[test]
    fn scalar_subqueries_that_run_alone_are_replaced_by_their_values() {
        let sql =
            "WITH r AS (SELECT k, v FROM t) SELECT k FROM r WHERE v = (SELECT max(v) FROM r) \
                   AND v > (SELECT avg(x.v) FROM u x WHERE x.k = r.k)";
        let mut asked = Vec::new();
        let out = inline_scalar_subqueries(sql, |q| {
            asked.push(q.to_string());
            // The correlated one reads r.k, which it cannot alone.
            Ok::<_, ()>((!q.contains("r.k")).then(|| "42.5".to_string()))
        })
        .unwrap();
        assert!(
            asked[0].starts_with("WITH r AS (SELECT k, v FROM t) SELECT max(v) FROM r"),
            "{asked:?}"
        );
        assert!(out.contains("v = (42.5)"), "{out}");
        assert!(out.contains("v > (SELECT avg(x.v)"), "{out}");
        let failed = inline_scalar_subqueries("SELECT 1 WHERE 1 = (SELECT 2)", |_| {
            Err::<Option<String>, _>("no")
        });
        assert!(matches!(failed, Err(InlineError::Evaluate("no"))));
    }

    #[test]
    fn exists_becomes_in_and_outer_join_filters_move_into_their_side() {
        let p = path(Some("tpch"), Some("tiny"));
        let q = query(
            "select o.p from orders o where o.d > 1 and exists (select * from lineitem l where l.orderkey = o.orderkey and l.a < l.b)",
            &p,
        );
        assert!(
            q.sql
                .contains("o.orderkey IN (SELECT l.orderkey FROM __t1 l WHERE l.a < l.b)"),
            "{}",
            q.sql
        );
        let q = query(
            "select c.k from customer c where not exists (select * from orders o where o.custkey = c.custkey)",
            &p,
        );
        assert!(
            q.sql.contains("(c.custkey IS NULL OR c.custkey NOT IN (SELECT o.custkey FROM __t1 o WHERE o.custkey IS NOT NULL))"),
            "{}",
            q.sql
        );
        // Unqualified columns could be either side's: left alone.
        let q = query(
            "select k from customer c where exists (select * from orders o where custkey = c.custkey)",
            &p,
        );
        assert!(q.sql.contains("EXISTS (SELECT"), "{}", q.sql);
        // Two correlated conditions: left alone.
        let q = query(
            "select k from lineitem a where exists (select * from lineitem b where b.o = a.o and b.s <> a.s)",
            &p,
        );
        assert!(q.sql.contains("EXISTS (SELECT"), "{}", q.sql);
        let q = query(
            "select c.k, count(o.k) from customer c left outer join orders o on c.k = o.ck and o.comment not like '%x%' group by c.k",
            &p,
        );
        assert!(
            q.sql.contains("LEFT OUTER JOIN (SELECT * FROM __t1 AS o WHERE o.comment NOT LIKE '%x%') AS o ON c.k = o.ck"),
            "{}",
            q.sql
        );
    }

    #[test]
    fn a_correlated_aggregate_becomes_a_join_on_its_key() {
        let p = path(Some("tpch"), Some("tiny"));
        let q = query(
            "select sum(l.price) from lineitem l, part p where p.partkey = l.partkey \
             and l.quantity < (select 0.2 * avg(l2.quantity) from lineitem l2 where l2.partkey = p.partkey and l2.x > 1)",
            &p,
        );
        assert!(
            q.sql.contains(
                "FROM __t0 l INNER JOIN __t1 p ON p.partkey = l.partkey \
                 INNER JOIN (SELECT l2.partkey AS __k0, 0.2 * avg(l2.quantity) AS __v FROM __t0 l2 \
                 WHERE l2.x > 1 GROUP BY l2.partkey) __d0 ON __d0.__k0 = p.partkey"
            ),
            "{}",
            q.sql
        );
        assert!(q.sql.ends_with("l.quantity < __d0.__v"), "{}", q.sql);
        // count over no rows is 0, not NULL: left alone.
        let q = query(
            "select p.k from part p where 3 < (select count(*) from lineitem l where l.partkey = p.partkey)",
            &p,
        );
        assert!(q.sql.contains("< (SELECT count(*)"), "{}", q.sql);
    }

    #[test]
    fn a_from_list_becomes_a_chain_of_joins_on_its_equalities() {
        let p = path(Some("tpch"), Some("tiny"));
        let q = query(
            "select n.name from part p, supplier s, lineitem l, nation n, region r \
             where s.suppkey = l.suppkey and p.partkey = l.partkey and s.nationkey = n.nationkey \
             and p.name like '%green%' and l.q > 1",
            &p,
        );
        assert!(
            q.sql.contains(
                "FROM __t0 p INNER JOIN __t1 l ON p.partkey = l.partkey \
                 INNER JOIN __t2 s ON s.suppkey = l.suppkey \
                 INNER JOIN __t3 n ON s.nationkey = n.nationkey, __t4 r \
                 WHERE p.name LIKE '%green%' AND l.q > 1"
            ),
            "{}",
            q.sql
        );
    }

    #[test]
    fn grouping_keys_of_one_name_become_positions() {
        let p = path(Some("tpch"), Some("tiny"));
        let q = query(
            "select c.custkey, c.name as c_name, n.name as n_name, sum(c.x) from customer c, nation n \
             group by c.custkey, c.name, n.name",
            &p,
        );
        assert!(q.sql.ends_with("GROUP BY 1, 2, 3"), "{}", q.sql);
        let q = query("select c.a, sum(c.x) from customer c group by c.a", &p);
        assert!(q.sql.ends_with("GROUP BY c.a"), "{}", q.sql);
    }

    #[test]
    fn common_table_expressions_are_not_catalog_tables() {
        let q = query(
            "select date '1998-12-01' - interval '90' day, interval '3' MONTH from t",
            &path(Some("tpch"), Some("tiny")),
        );
        assert!(
            q.sql.contains("INTERVAL '90 days'") && q.sql.contains("INTERVAL '3 months'"),
            "{}",
            q.sql
        );
        let q = query(
            "with revenue as (select 1 as x from orders) select * from revenue",
            &path(Some("tpch"), Some("tiny")),
        );
        let tables: Vec<String> = q.tables.values().map(|t| t.to_string()).collect();
        assert_eq!(tables, ["tpch.tiny.orders"]);
        assert!(q.sql.contains("FROM revenue"), "{}", q.sql);
    }

    #[test]
    fn errors_have_trinos_names_and_locations() {
        let e = analyze("SELECT * MORF foo", &path(None, None)).unwrap_err();
        assert_eq!(e.kind, SqlErrorKind::SyntaxError, "{e:?}");
        assert_eq!((e.line, e.column), (Some(1), Some(10)), "{e:?}");
        assert!(e.message.starts_with("line 1:"), "{}", e.message);
        let e = analyze("SELECT a\nFROM t WHERE", &path(None, None)).unwrap_err();
        assert_eq!((e.kind, e.line), (SqlErrorKind::SyntaxError, Some(2)));
        let e = analyze("select * from nation", &path(None, None)).unwrap_err();
        assert_eq!(e.kind, SqlErrorKind::MissingCatalogName);
        let e = analyze("select * from nation", &path(Some("tpch"), None)).unwrap_err();
        assert_eq!(e.kind, SqlErrorKind::MissingSchemaName);
        let e = analyze("insert into t values (1)", &path(None, None)).unwrap_err();
        assert_eq!(e.kind, SqlErrorKind::NotSupported);
        assert!(e.message.contains("INSERT INTO"), "{}", e.message);
        let e = analyze("select 1; select 2", &path(None, None)).unwrap_err();
        assert_eq!(e.kind, SqlErrorKind::SyntaxError);
        let e = analyze("show functions", &path(None, None)).unwrap_err();
        assert_eq!(e.kind, SqlErrorKind::NotSupported);
        assert_eq!(
            analyze("  ;", &path(None, None)).unwrap_err().kind,
            SqlErrorKind::SyntaxError
        );
    }

    #[test]
    fn metadata_statements_become_information_schema_queries() {
        let p = path(Some("tpch"), Some("tiny"));
        let q = query("SHOW CATALOGS", &p);
        assert_eq!(
            q.tables.values().next().unwrap().to_string(),
            "system.metadata.catalogs"
        );
        let q = query("show schemas from tpch like 's%'", &p);
        assert!(q.sql.contains("schema_name LIKE 's%'"), "{}", q.sql);
        assert_eq!(
            q.tables.values().next().unwrap().to_string(),
            "tpch.information_schema.schemata"
        );
        let q = query("SHOW TABLES", &p);
        assert!(q.sql.contains("table_schema = 'tiny'"), "{}", q.sql);
        let q = query("describe Nation", &p);
        assert_eq!(q.must_exist.unwrap().to_string(), "tpch.tiny.nation");
        let q = query("SHOW COLUMNS FROM files.data.\"MyTable\"", &p);
        assert!(q.sql.contains("table_name = 'MyTable'"), "{}", q.sql);
        assert_eq!(
            analyze("USE sf1", &p).unwrap(),
            Analyzed::Use {
                catalog: "tpch".into(),
                schema: "sf1".into()
            }
        );
        assert_eq!(
            analyze("use files.Data;", &path(None, None)).unwrap(),
            Analyzed::Use {
                catalog: "files".into(),
                schema: "data".into()
            }
        );
        assert_eq!(
            analyze("USE x", &path(None, None)).unwrap_err().kind,
            SqlErrorKind::MissingCatalogName
        );
        assert_eq!(
            analyze("SHOW TABLES", &path(Some("tpch"), None))
                .unwrap_err()
                .kind,
            SqlErrorKind::MissingSchemaName
        );
    }
}
