//! Rewrites that keep a query's meaning and give the executor a shape it
//! runs. polars' SQL front end has no correlated subqueries and no join
//! conditions beyond equalities; these classic rewrites cover the common
//! cases, and anything they do not match is left for the executor to
//! refuse (`NOT_SUPPORTED`).
//!
//! - `[NOT] EXISTS (SELECT .. FROM t WHERE <t only> AND t.k = outer.k)`,
//!   a conjunct of a `WHERE`, becomes `outer.k IN (SELECT t.k FROM t WHERE
//!   <t only>)`; `NOT EXISTS` becomes `(outer.k IS NULL OR outer.k NOT IN
//!   (... AND t.k IS NOT NULL))`, which is what `NOT EXISTS` means with
//!   nulls on either side.
//! - `FROM a, b, c WHERE a.k = b.k AND b.j = c.j`: the executor plans a
//!   `FROM` list as cross joins it then filters (TPC-H Q9 ran 21 times
//!   DuckDB's time that way); as a chain of inner joins, each on the
//!   equalities that connect its table to those before it, it runs as
//!   hash joins. Tables are taken in `FROM` order, each as soon as it
//!   connects; one that never connects stays a `FROM` item, a cross join
//!   as written. Moving an inner join's conditions from `WHERE` to `ON`
//!   keeps its meaning.
//! - `LEFT JOIN t ON a.k = t.k AND <t only>`: the conditions on the
//!   null-supplying side alone filter that side before the join:
//!   `LEFT JOIN (SELECT * FROM t WHERE <t only>) t ON a.k = t.k`.
//! - `x < (SELECT 0.2 * avg(t.v) FROM t WHERE t.k = outer.k AND <t only>)`,
//!   a conjunct of a `WHERE`, becomes a join with the aggregate per key:
//!   `FROM ..., (SELECT t.k AS __k0, 0.2 * avg(t.v) AS __v FROM t WHERE
//!   <t only> GROUP BY t.k) __d0 WHERE x < __d0.__v AND __d0.__k0 =
//!   outer.k`. An outer row with no group compares with NULL in the
//!   original and has no partner in the join: dropped either way. Only for
//!   `sum`, `avg`, `min` and `max`, whose value over no rows is NULL
//!   (`count` gives 0, which the join would lose).
//!
//! Both need every column named with its table (`t.k`, not `k`): an
//! unqualified name could be either side's, so such a query is left alone.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, GroupByExpr, Ident, JoinConstraint, JoinOperator, ObjectNamePart, Query,
    Select, SelectItem, SetExpr, TableAlias, TableFactor, TableWithJoins,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

use crate::fold;

/// Applies the rewrites to a query's own SELECT (its subqueries get theirs
/// when the visitor reaches them).
pub fn rewrite(query: &mut Query) {
    if let SetExpr::Select(select) = query.body.as_mut() {
        exists_to_in(select);
        filter_outer_join_sides(select);
        comma_joins_to_chain(select);
        join_correlated_aggregates(select);
        group_by_positions(select);
    }
}

/// The single name a FROM item brings into scope.
fn item_name(t: &TableWithJoins) -> Option<String> {
    let names = introduced(std::slice::from_ref(t))?;
    (names.len() == 1).then(|| names.into_iter().next())?
}

fn comma_joins_to_chain(select: &mut Select) {
    if select.from.len() < 2 || select.from.iter().any(|t| !t.joins.is_empty()) {
        return;
    }
    let Some(names) = select
        .from
        .iter()
        .map(item_name)
        .collect::<Option<Vec<_>>>()
    else {
        return;
    };
    let distinct: BTreeSet<&String> = names.iter().collect();
    if distinct.len() != names.len() {
        return;
    }
    let Some(selection) = select.selection.take() else {
        return;
    };
    let mut parts = Vec::new();
    conjuncts(selection, &mut parts);
    // The tables each equality between two of them connects.
    let edge = |c: &Expr| -> Option<(String, String)> {
        let Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = c
        else {
            return None;
        };
        let (l, r) = (refs(left), refs(right));
        if l.unqualified || r.unqualified || l.subquery || r.subquery {
            return None;
        }
        let one = |t: &BTreeSet<String>| (t.len() == 1).then(|| t.iter().next().cloned())?;
        let (a, b) = (one(&l.tables)?, one(&r.tables)?);
        (a != b && names.contains(&a) && names.contains(&b)).then_some((a, b))
    };
    let edges: Vec<Option<(String, String)>> = parts.iter().map(edge).collect();
    let mut joined: BTreeSet<String> = BTreeSet::from([names[0].clone()]);
    let mut taken = vec![false; names.len()];
    taken[0] = true;
    let mut used = vec![false; parts.len()];
    let mut joins = Vec::new();
    loop {
        let connects = |i: usize, joined: &BTreeSet<String>| -> Vec<usize> {
            (0..parts.len())
                .filter(|&c| !used[c])
                .filter(|&c| {
                    edges[c].as_ref().is_some_and(|(a, b)| {
                        (*a == names[i] && joined.contains(b))
                            || (*b == names[i] && joined.contains(a))
                    })
                })
                .collect()
        };
        let next = (0..names.len())
            .filter(|&i| !taken[i])
            .map(|i| (i, connects(i, &joined)))
            .find(|(_, on)| !on.is_empty());
        let Some((i, on)) = next else { break };
        let condition = and_all(on.iter().map(|&c| parts[c].clone()).collect());
        let Some(condition) = condition else { break };
        for c in on {
            used[c] = true;
        }
        taken[i] = true;
        joined.insert(names[i].clone());
        joins.push(sqlparser::ast::Join {
            relation: select.from[i].relation.clone(),
            global: false,
            join_operator: JoinOperator::Inner(JoinConstraint::On(condition)),
        });
    }
    if joins.is_empty() {
        select.selection = and_all(parts);
        return;
    }
    let mut from = vec![TableWithJoins {
        relation: select.from[0].relation.clone(),
        joins,
    }];
    from.extend(
        select
            .from
            .iter()
            .zip(&taken)
            .filter(|(_, t)| !**t)
            .map(|(f, _)| f.clone()),
    );
    select.from = from;
    select.selection = and_all(
        parts
            .into_iter()
            .zip(used)
            .filter(|(_, u)| !u)
            .map(|(p, _)| p)
            .collect(),
    );
}

/// `GROUP BY c.name, n.name`: the executor names grouping keys by their
/// column and refuses two of one name. Keys that are select items become
/// the items' positions (`GROUP BY 2, 5`, which Trino reads the same), so
/// they take the items' names.
fn group_by_positions(select: &mut Select) {
    let GroupByExpr::Expressions(keys, modifiers) = &mut select.group_by else {
        return;
    };
    if !modifiers.is_empty() {
        return;
    }
    let name = |e: &Expr| match e {
        Expr::CompoundIdentifier(parts) => parts.last().map(fold),
        Expr::Identifier(i) => Some(fold(i)),
        _ => None,
    };
    let names: Vec<String> = keys.iter().filter_map(name).collect();
    let distinct: BTreeSet<&String> = names.iter().collect();
    if distinct.len() == names.len() {
        return;
    }
    for key in keys.iter_mut() {
        let position = select.projection.iter().position(|item| match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e == key,
            _ => false,
        });
        if let Some(p) = position {
            *key = Expr::value(sqlparser::ast::Value::Number((p + 1).to_string(), false));
        }
    }
}

/// The relation names (aliases, else table names) a FROM clause brings
/// into scope; `None` when it holds something else (a function, ...).
fn introduced(from: &[TableWithJoins]) -> Option<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    for t in from {
        for f in std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)) {
            match f {
                TableFactor::Table { name, alias, .. } => {
                    let n = match alias {
                        Some(a) => fold(&a.name),
                        None => match name.0.last() {
                            Some(ObjectNamePart::Identifier(i)) => fold(i),
                            _ => return None,
                        },
                    };
                    names.insert(n);
                }
                TableFactor::Derived { alias: Some(a), .. } => {
                    names.insert(fold(&a.name));
                }
                _ => return None,
            }
        }
    }
    Some(names)
}

/// What an expression's column references name.
#[derive(Default)]
struct Refs {
    /// The tables (qualifiers) of qualified columns.
    tables: BTreeSet<String>,
    /// Some column is unqualified.
    unqualified: bool,
    /// It holds a subquery.
    subquery: bool,
}

fn refs(e: &Expr) -> Refs {
    let mut r = Refs::default();
    let _ = sqlparser::ast::visit_expressions(e, |x| {
        match x {
            Expr::Identifier(_) => r.unqualified = true,
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                r.tables.insert(fold(&parts[parts.len() - 2]));
            }
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => r.subquery = true,
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    r
}

fn conjuncts(e: Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(*left, out);
            conjuncts(*right, out);
        }
        Expr::Nested(inner)
            if matches!(
                inner.as_ref(),
                Expr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            conjuncts(*inner, out)
        }
        other => out.push(other),
    }
}

fn and_all(parts: Vec<Expr>) -> Option<Expr> {
    parts.into_iter().reduce(|a, b| Expr::BinaryOp {
        left: Box::new(a),
        op: BinaryOperator::And,
        right: Box::new(b),
    })
}

fn exists_to_in(select: &mut Select) {
    let Some(selection) = select.selection.take() else {
        return;
    };
    let mut parts = Vec::new();
    conjuncts(selection, &mut parts);
    let parts = parts
        .into_iter()
        .map(|c| match c {
            Expr::Exists { subquery, negated } => {
                semi_join(&subquery, negated).unwrap_or(Expr::Exists { subquery, negated })
            }
            other => other,
        })
        .collect();
    select.selection = and_all(parts);
}

/// The SELECT of a subquery with no WITH, ORDER BY, LIMIT, GROUP BY,
/// HAVING or DISTINCT: the shape the rewrites know.
fn plain_select(q: &Query) -> Option<&Select> {
    if q.with.is_some() || q.order_by.is_some() || q.limit_clause.is_some() || q.fetch.is_some() {
        return None;
    }
    let SetExpr::Select(inner) = q.body.as_ref() else {
        return None;
    };
    let plain_group =
        matches!(&inner.group_by, GroupByExpr::Expressions(v, m) if v.is_empty() && m.is_empty());
    (plain_group && inner.having.is_none() && inner.distinct.is_none()).then_some(inner)
}

/// `[NOT] EXISTS (q)` as an `IN` test, if `q` has the one shape this knows.
fn semi_join(q: &Query, negated: bool) -> Option<Expr> {
    let inner = plain_select(q)?;
    let (mut local, correlated) = split_correlated(inner)?;
    let [(inner_key, outer_key)] = correlated.as_slice() else {
        return None;
    };
    let mut keys = inner.clone();
    keys.projection = vec![SelectItem::UnnamedExpr(inner_key.clone())];
    if negated {
        local.push(Expr::IsNotNull(Box::new(inner_key.clone())));
    }
    keys.selection = and_all(local);
    let mut sub = q.clone();
    sub.body = Box::new(SetExpr::Select(Box::new(keys)));
    let test = Expr::InSubquery {
        expr: Box::new(outer_key.clone()),
        subquery: Box::new(sub),
        negated,
    };
    Some(if negated {
        Expr::Nested(Box::new(Expr::BinaryOp {
            left: Box::new(Expr::IsNull(Box::new(outer_key.clone()))),
            op: BinaryOperator::Or,
            right: Box::new(test),
        }))
    } else {
        test
    })
}

/// A correlated subquery's conjuncts split: those on its own tables, and
/// the correlations `inner = outer` as (inner, outer) pairs; `None` when a
/// conjunct is anything else (or names an unqualified column).
#[allow(clippy::type_complexity)]
fn split_correlated(inner: &Select) -> Option<(Vec<Expr>, Vec<(Expr, Expr)>)> {
    let names = introduced(&inner.from)?;
    let mut parts = Vec::new();
    conjuncts(inner.selection.clone()?, &mut parts);
    let inside = |e: &Expr| {
        let r = refs(e);
        !r.tables.is_empty() && r.tables.is_subset(&names)
    };
    let outside = |e: &Expr| {
        let r = refs(e);
        !r.tables.is_empty() && r.tables.is_disjoint(&names)
    };
    let (mut local, mut correlated) = (Vec::new(), Vec::new());
    for c in parts {
        let r = refs(&c);
        if r.unqualified || r.subquery {
            return None;
        }
        if r.tables.is_subset(&names) {
            local.push(c);
            continue;
        }
        let Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = c
        else {
            return None;
        };
        if inside(&left) && outside(&right) {
            correlated.push((*left, *right));
        } else if inside(&right) && outside(&left) {
            correlated.push((*right, *left));
        } else {
            return None;
        }
    }
    Some((local, correlated))
}

/// The aggregate a correlated scalar subquery computes, if it is one
/// whose value over no rows is NULL.
fn null_on_empty_aggregate(e: &Expr) -> bool {
    let mut found = false;
    let mut count = false;
    let _ = sqlparser::ast::visit_expressions(e, |x| {
        if let Expr::Function(f) = x {
            match f.name.to_string().to_lowercase().as_str() {
                "sum" | "avg" | "min" | "max" => found = true,
                "count" => count = true,
                _ => {}
            }
        }
        ControlFlow::<()>::Continue(())
    });
    found && !count
}

fn join_correlated_aggregates(select: &mut Select) {
    let Some(selection) = select.selection.take() else {
        return;
    };
    let mut parts = Vec::new();
    conjuncts(selection, &mut parts);
    let mut out = Vec::new();
    let mut made = 0;
    for c in parts {
        let Expr::BinaryOp { left, op, right } = c else {
            out.push(c);
            continue;
        };
        let comparison = matches!(
            op,
            BinaryOperator::Eq
                | BinaryOperator::NotEq
                | BinaryOperator::Lt
                | BinaryOperator::LtEq
                | BinaryOperator::Gt
                | BinaryOperator::GtEq
        );
        let joined = match (left.as_ref(), right.as_ref()) {
            (Expr::Subquery(q), other) | (other, Expr::Subquery(q))
                if comparison && !refs(other).subquery =>
            {
                aggregate_per_key(q, &format!("__d{made}"))
            }
            _ => None,
        };
        let Some((derived, value, keys)) = joined else {
            out.push(Expr::BinaryOp { left, op, right });
            continue;
        };
        let (left, right) = if matches!(left.as_ref(), Expr::Subquery(_)) {
            (Box::new(value), right)
        } else {
            (left, Box::new(value))
        };
        made += 1;
        out.push(Expr::BinaryOp { left, op, right });
        // Joined on its keys to the FROM item that holds the outer
        // columns (an equi-join; the comparison stays a filter after it),
        // else as another FROM item with its keys in the WHERE.
        let outer: BTreeSet<String> = keys.iter().flat_map(|k| refs(k).tables).collect();
        let holder = select.from.iter().position(|t| {
            introduced(std::slice::from_ref(t)).is_some_and(|names| {
                outer
                    .iter()
                    .all(|o| o.starts_with("__d") || names.contains(o))
            })
        });
        match (holder, and_all(keys.clone())) {
            (Some(i), Some(on)) => select.from[i].joins.push(sqlparser::ast::Join {
                relation: derived.relation,
                global: false,
                join_operator: JoinOperator::Inner(JoinConstraint::On(on)),
            }),
            _ => {
                out.extend(keys);
                select.from.push(derived);
            }
        }
    }
    select.selection = and_all(out);
}

/// A correlated aggregate subquery as a derived table of the aggregate per
/// correlation key, named `alias`; with the expression for its value and
/// the equalities that join it to the outer row.
fn aggregate_per_key(q: &Query, alias: &str) -> Option<(TableWithJoins, Expr, Vec<Expr>)> {
    let inner = plain_select(q)?;
    let [item] = inner.projection.as_slice() else {
        return None;
    };
    let value = match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e.clone(),
        _ => return None,
    };
    if !null_on_empty_aggregate(&value) || refs(&value).subquery {
        return None;
    }
    let (local, correlated) = split_correlated(inner)?;
    if correlated.is_empty() {
        return None;
    }
    let mut per_key = inner.clone();
    per_key.projection = correlated
        .iter()
        .enumerate()
        .map(|(i, (k, _))| SelectItem::ExprWithAlias {
            expr: k.clone(),
            alias: Ident::new(format!("__k{i}")),
        })
        .chain(std::iter::once(SelectItem::ExprWithAlias {
            expr: value,
            alias: Ident::new("__v"),
        }))
        .collect();
    per_key.selection = and_all(local);
    per_key.group_by = GroupByExpr::Expressions(
        correlated.iter().map(|(k, _)| k.clone()).collect(),
        Vec::new(),
    );
    let mut sub = q.clone();
    sub.body = Box::new(SetExpr::Select(Box::new(per_key)));
    let column = |c: &str| Expr::CompoundIdentifier(vec![Ident::new(alias), Ident::new(c)]);
    let keys = correlated
        .into_iter()
        .enumerate()
        .map(|(i, (_, outer))| Expr::BinaryOp {
            left: Box::new(column(&format!("__k{i}"))),
            op: BinaryOperator::Eq,
            right: Box::new(outer),
        })
        .collect();
    let derived = TableWithJoins {
        relation: TableFactor::Derived {
            lateral: false,
            subquery: Box::new(sub),
            alias: Some(TableAlias {
                explicit: false,
                name: Ident::new(alias),
                columns: Vec::new(),
                at: None,
            }),
            sample: None,
        },
        joins: Vec::new(),
    };
    Some((derived, column("__v"), keys))
}

fn filter_outer_join_sides(select: &mut Select) {
    for t in &mut select.from {
        for join in &mut t.joins {
            let (JoinOperator::Left(JoinConstraint::On(on))
            | JoinOperator::LeftOuter(JoinConstraint::On(on))) = &mut join.join_operator
            else {
                continue;
            };
            let TableFactor::Table {
                name,
                alias,
                args: None,
                ..
            } = &join.relation
            else {
                continue;
            };
            let side = match alias {
                Some(a) => a.name.clone(),
                None => match name.0.last() {
                    Some(ObjectNamePart::Identifier(i)) => i.clone(),
                    _ => continue,
                },
            };
            let mut parts = Vec::new();
            conjuncts(on.clone(), &mut parts);
            let only_side = |c: &Expr| {
                let r = refs(c);
                !r.unqualified
                    && !r.subquery
                    && r.tables.len() == 1
                    && r.tables.contains(&fold(&side))
            };
            let (pushed, kept): (Vec<Expr>, Vec<Expr>) = parts.into_iter().partition(only_side);
            let (Some(filter), Some(condition)) = (and_all(pushed), and_all(kept)) else {
                continue;
            };
            let text = format!("SELECT * FROM {name} AS {side} WHERE {filter}");
            let Ok(mut parsed) = Parser::parse_sql(&GenericDialect {}, &text) else {
                continue;
            };
            let Some(sqlparser::ast::Statement::Query(sub)) = parsed.pop() else {
                continue;
            };
            join.relation = TableFactor::Derived {
                lateral: false,
                subquery: sub,
                alias: Some(TableAlias {
                    explicit: true,
                    name: Ident {
                        value: side.value.clone(),
                        quote_style: side.quote_style,
                        span: side.span,
                    },
                    columns: Vec::new(),
                    at: None,
                }),
                sample: None,
            };
            *on = condition;
        }
    }
}
