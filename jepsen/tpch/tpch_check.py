#!/usr/bin/env python3
"""Check and benchmark the 22 TPC-H queries on our Trino-compatible server, with DuckDB as reference.

Modes:
  check     run each query through the Trino client and in DuckDB over the same Parquet files,
            compare the results, print one line per query (exit 0 iff all match or NOT_SUPPORTED)
  bench     time each query on both (median of --runs after one warm-up), print ratios and
            their geometric mean
  selftest  no server: unit-check the comparison logic, run every query in DuckDB and
            print the row counts

The queries live in queries/qNN.sql next to this file; tables are unqualified, so the
server side resolves them in --catalog/--schema and DuckDB in views named like the tables.
JSON status values are the printed keywords: "match", "match (ties reordered)",
"NOT_SUPPORTED", "MISMATCH", "ERROR".
"""

import argparse
import datetime
import json
import math
import re
import statistics
import sys
import time
import urllib.parse
from decimal import Decimal
from pathlib import Path

try:
    import duckdb
    import trino
except ImportError as exc:
    print(f"tpch_check: missing Python package {exc.name!r} (pip install duckdb trino)")
    sys.exit(3)

QUERY_DIR = Path(__file__).resolve().parent / "queries"
TABLES = ("nation", "region", "part", "supplier", "partsupp", "customer", "orders", "lineitem")

MATCH = "match"
TIES = "match (ties reordered)"
MISMATCH = "MISMATCH"
ERROR = "ERROR"
NOT_SUPPORTED = "NOT_SUPPORTED"

REL_TOL = 1e-6
ABS_TOL = 1e-6

# Row counts that hold at every standard scale factor, used as a sanity check by selftest.
SCALE_FREE_ROW_COUNTS = {1: 4, 4: 5, 5: 5, 6: 1, 7: 4, 8: 2, 12: 2, 14: 1, 17: 1, 19: 1, 22: 7}


# ---------------------------------------------------------------- queries


def load_queries(spec):
    """Return [(name, number, sql)] for a comma-separated list of query numbers (default all 22)."""
    numbers = [int(n) for n in spec.split(",")] if spec else range(1, 23)
    queries = []
    for n in numbers:
        if not 1 <= n <= 22:
            raise SystemExit(f"tpch_check: no TPC-H query {n}")
        name = f"q{n:02d}"
        queries.append((name, n, (QUERY_DIR / f"{name}.sql").read_text().strip()))
    return queries


_ORDER_TOKENS = re.compile(r"'(?:[^']|'')*'|--[^\n]*|[()]|\border\s+by\b", re.IGNORECASE)


def has_outer_order_by(sql):
    """True if ORDER BY appears outside any parentheses (ignoring strings and comments)."""
    depth = 0
    for m in _ORDER_TOKENS.finditer(sql):
        token = m.group()
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        elif token[0] not in "'-" and depth == 0:
            return True
    return False


# ---------------------------------------------------------------- comparison


def _norm(v):
    """Decimals compare as floats, strings without trailing spaces."""
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, str):
        return v.rstrip(" ")
    return v


def values_equal(a, b):
    a, b = _norm(a), _norm(b)
    if a is None or b is None:
        return a is None and b is None
    numeric = (int, float)
    if isinstance(a, numeric) and isinstance(b, numeric):
        if isinstance(a, float) or isinstance(b, float):
            if math.isnan(a) or math.isnan(b):
                return math.isnan(a) and math.isnan(b)
            return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)
        return a == b
    return type(a) is type(b) and a == b


def _sort_key(row):
    """Total order over rows of mixed types; floats rounded so tolerance-equal values sort alike."""
    key = []
    for v in map(_norm, row):
        if v is None:
            key.append((0, 0))
        elif isinstance(v, float):
            key.append((1, float(f"{v:.6g}")))
        elif isinstance(v, int):
            key.append((1, v))
        elif isinstance(v, str):
            key.append((2, v))
        else:  # dates and anything else: ISO text sorts chronologically
            key.append((3, str(v)))
    return key


def _first_difference(ours, ref):
    for i, (x, y) in enumerate(zip(ours, ref)):
        if len(x) != len(y):
            return f"row {i}: {len(x)} columns, duckdb {len(y)}"
        for j, (a, b) in enumerate(zip(x, y)):
            if not values_equal(a, b):
                return f"row {i} column {j}: ours {a!r}, duckdb {b!r}"
    return None


def compare(ours, ref, ordered):
    """Compare result rows; return (status, first difference or '')."""
    if len(ours) != len(ref):
        return MISMATCH, f"{len(ours)} rows, duckdb {len(ref)}"
    in_order = _first_difference(ours, ref)
    if in_order is None:
        return MATCH, ""
    as_sorted = _first_difference(sorted(ours, key=_sort_key), sorted(ref, key=_sort_key))
    if as_sorted is None:
        return (TIES if ordered else MATCH), ""
    return MISMATCH, in_order if ordered else f"{as_sorted} (rows sorted)"


# ---------------------------------------------------------------- engines


def duckdb_connect(parquet_dir, threads=None):
    """In-memory DuckDB with one view per TPC-H table over DIR/<table>.parquet."""
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads TO {int(threads)}")
    for table in TABLES:
        path = Path(parquet_dir) / f"{table}.parquet"
        if not path.is_file():
            raise SystemExit(f"tpch_check: missing {path}")
        literal = str(path.resolve()).replace("'", "''")
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{literal}')")
    return con


def trino_connect(args):
    url = urllib.parse.urlsplit(args.server)
    scheme = url.scheme or "http"
    return trino.dbapi.connect(
        host=url.hostname,
        port=url.port or (443 if scheme == "https" else 80),
        user=args.user,
        catalog=args.catalog,
        schema=args.schema,
        http_scheme=scheme,
    )


def run_trino(conn, sql):
    cur = conn.cursor()
    cur.execute(sql)
    return cur.fetchall()


def run_duckdb(con, sql):
    return con.execute(sql).fetchall()


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def error_fields(exc):
    """(error name, one-line message) of a failed query."""
    if isinstance(exc, trino.exceptions.TrinoQueryError):
        name, message = exc.error_name or "UNKNOWN", exc.message or str(exc)
    elif isinstance(exc, duckdb.Error):
        name, message = f"duckdb {type(exc).__name__}", str(exc)
    else:
        name, message = type(exc).__name__, str(exc)
    return name, " ".join(message.split())


def write_json(path, data):
    if path:
        Path(path).write_text(json.dumps(data, indent=2) + "\n")


# ---------------------------------------------------------------- modes


def read_every_table(conn):
    """Asks the server for each table's row count: a worker generates a tpch
    table (into its Parquet cache, which DuckDB then reads) when first asked."""
    return {table: run_trino(conn, f"SELECT count(*) FROM {table}")[0][0] for table in TABLES}


def cmd_check(args):
    queries = load_queries(args.queries)
    conn = trino_connect(args)
    counts = read_every_table(conn)
    duck = duckdb_connect(args.parquet_dir)
    for table, n in counts.items():
        ref = run_duckdb(duck, f"SELECT count(*) FROM {table}")[0][0]
        if ref != n:
            print(f"tpch_check: {table} has {n} rows on the server, {ref} in {args.parquet_dir}")
            return 1
    records = []
    for name, _, sql in queries:
        rec = {"query": name, "status": None, "rows": None, "ours_s": None,
               "duckdb_s": None, "error_name": None, "message": None}
        records.append(rec)
        try:
            ours, rec["ours_s"] = timed(run_trino, conn, sql)
            rec["rows"] = len(ours)
            ref, rec["duckdb_s"] = timed(run_duckdb, duck, sql)
        except Exception as exc:  # any failure is reported per query, the run goes on
            rec["error_name"], rec["message"] = error_fields(exc)
            if rec["error_name"] == NOT_SUPPORTED:
                rec["status"] = NOT_SUPPORTED
                print(f"{name} NOT_SUPPORTED: {rec['message'][:120]}", flush=True)
            else:
                rec["status"] = ERROR
                print(f"{name} ERROR {rec['error_name']}: {rec['message']}", flush=True)
            continue
        rec["status"], diff = compare(ours, ref, has_outer_order_by(sql))
        if rec["status"] == MISMATCH:
            rec["message"] = diff
            print(f"{name} MISMATCH: {diff}", flush=True)
        else:
            print(f"{name} {rec['status']} {rec['rows']} rows {rec['ours_s']:.3f} s "
                  f"(duckdb {rec['duckdb_s']:.3f} s)", flush=True)
    write_json(args.json, records)
    ok = all(r["status"] in (MATCH, TIES, NOT_SUPPORTED) for r in records)
    return 0 if ok else 1


def median_seconds(runs, fn, *args):
    """One warm-up run, then the median wall time of `runs` runs."""
    fn(*args)
    return statistics.median(timed(fn, *args)[1] for _ in range(runs))


def cmd_bench(args):
    queries = load_queries(args.queries)
    conn = trino_connect(args)
    read_every_table(conn)
    duck = duckdb_connect(args.parquet_dir, threads=2)
    records = []
    print(f"{'query':<6} {'ours (ms)':>11} {'duckdb (ms)':>12} {'ratio':>8}", flush=True)
    for name, _, sql in queries:
        rec = {"query": name, "ours_ms": None, "duckdb_ms": None, "ratio": None,
               "error_name": None, "message": None}
        records.append(rec)
        try:
            rec["ours_ms"] = 1000 * median_seconds(args.runs, run_trino, conn, sql)
        except Exception as exc:  # a failing query is listed as not run
            rec["error_name"], rec["message"] = error_fields(exc)
            print(f"{name:<6} not run: {rec['error_name']}", flush=True)
            continue
        try:
            rec["duckdb_ms"] = 1000 * median_seconds(args.runs, run_duckdb, duck, sql)
        except duckdb.Error as exc:
            rec["error_name"], rec["message"] = error_fields(exc)
            print(f"{name:<6} {rec['ours_ms']:>11.1f} duckdb failed: {rec['message'][:80]}", flush=True)
            continue
        rec["ratio"] = rec["ours_ms"] / rec["duckdb_ms"]
        print(f"{name:<6} {rec['ours_ms']:>11.1f} {rec['duckdb_ms']:>12.1f} {rec['ratio']:>8.2f}", flush=True)
    ratios = [r["ratio"] for r in records if r["ratio"] is not None]
    geomean = math.exp(sum(map(math.log, ratios)) / len(ratios)) if ratios else None
    if geomean is None:
        print("geomean ratio: no query ran on both")
    else:
        print(f"geomean ratio ours/duckdb over {len(ratios)} queries: {geomean:.2f}")
    write_json(args.json, {"queries": records, "geomean_ratio": geomean})
    return 0


def _selftest_compare():
    """Hand-made cases for compare() and has_outer_order_by(); return the failures."""
    day = datetime.date(1995, 3, 15)
    cases = [
        # (label, ours, duckdb, ordered, expected status)
        ("float within relative tolerance", [(1, 1e6)], [(1, 1e6 + 0.5)], True, MATCH),
        ("float within absolute tolerance", [(0.0,)], [(5e-7,)], False, MATCH),
        ("float outside tolerance", [(1.0,)], [(1.001,)], False, MISMATCH),
        ("Decimal vs float", [(Decimal("1234.56"),)], [(1234.56,)], False, MATCH),
        ("Decimal vs float outside tolerance", [(Decimal("1234.56"),)], [(1234.57,)], False, MISMATCH),
        ("int vs float", [(4,)], [(4.0,)], False, MATCH),
        ("int vs int", [(4,)], [(5,)], False, MISMATCH),
        ("trailing spaces", [("AIR  ",)], [("AIR",)], False, MATCH),
        ("string case", [("AIR",)], [("air",)], False, MISMATCH),
        ("string vs number", [("1",)], [(1,)], False, MISMATCH),
        ("dates", [(day,)], [(day,)], False, MATCH),
        ("different dates", [(day,)], [(day + datetime.timedelta(days=1),)], False, MISMATCH),
        ("NULLs", [(None, 1)], [(None, 1)], False, MATCH),
        ("NULL vs zero", [(None,)], [(0,)], False, MISMATCH),
        ("row count", [(1,)], [], False, MISMATCH),
        ("column count", [(1, 2)], [(1,)], False, MISMATCH),
        ("unordered multiset", [(2, "b"), (1, "a")], [(1, "a"), (2, "b")], False, MATCH),
        ("multiset duplicates", [(1,), (1,), (2,)], [(1,), (2,), (2,)], False, MISMATCH),
        ("ordered, ties reordered", [(1, "b"), (1, "a")], [(1, "a"), (1, "b")], True, TIES),
        ("ordered, mixed None and values", [(None,), (day,)], [(day,), (None,)], True, TIES),
        ("ordered, same rows", [[1, "a"], [2, "b"]], [(1, "a"), (2, "b")], True, MATCH),
    ]
    failures = []
    for label, ours, ref, ordered, expected in cases:
        status, diff = compare(ours, ref, ordered)
        if status != expected:
            failures.append(f"compare {label}: got {status} {diff}, expected {expected}")
    order_cases = [
        ("SELECT a FROM t ORDER BY a", True),
        ("SELECT a FROM (SELECT a FROM t ORDER BY a LIMIT 3)", False),
        ("SELECT 'x order by y' FROM t", False),
        ("-- order by\nSELECT a FROM t", False),
        ("WITH w AS (SELECT a FROM t) SELECT a FROM w\nORDER\n  BY a", True),
    ]
    for sql, expected in order_cases:
        if has_outer_order_by(sql) != expected:
            failures.append(f"has_outer_order_by({sql!r}) != {expected}")
    return failures


def cmd_selftest(args):
    failures = _selftest_compare()
    for failure in failures:
        print(f"FAIL {failure}")
    print(f"comparison checks: {len(failures)} failed")
    duck = duckdb_connect(args.parquet_dir)
    for name, number, sql in load_queries(args.queries):
        try:
            rows, seconds = timed(run_duckdb, duck, sql)
        except duckdb.Error as exc:
            failures.append(name)
            print(f"{name} FAIL {' '.join(str(exc).split())}")
            continue
        expected = SCALE_FREE_ROW_COUNTS.get(number)
        if expected is not None and len(rows) != expected:
            failures.append(name)
            print(f"{name} FAIL {len(rows)} rows, expected {expected}")
            continue
        print(f"{name} {len(rows)} rows {seconds:.3f} s")
    print("selftest " + ("passed" if not failures else f"FAILED ({len(failures)} failures)"))
    return 1 if failures else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    modes = parser.add_subparsers(dest="mode", required=True)

    def add_common(p):
        p.add_argument("--parquet-dir", required=True, help="directory holding <table>.parquet")
        p.add_argument("--queries", help="comma-separated query numbers (default: 1..22)")

    def add_server(p):
        p.add_argument("--server", required=True, help="e.g. http://127.0.0.1:8080")
        p.add_argument("--user", default="tpch-check")
        p.add_argument("--catalog", default="tpch")
        p.add_argument("--schema", required=True, help="e.g. tiny or sf1")
        p.add_argument("--json", help="write the results as JSON to this file")

    check = modes.add_parser("check", help="compare results with DuckDB")
    add_common(check)
    add_server(check)
    bench = modes.add_parser("bench", help="time against DuckDB")
    add_common(bench)
    add_server(bench)
    bench.add_argument("--runs", type=int, default=3, help="timed runs per query, after one warm-up")
    selftest = modes.add_parser("selftest", help="DuckDB side and comparison logic only")
    add_common(selftest)

    args = parser.parse_args()
    return {"check": cmd_check, "bench": cmd_bench, "selftest": cmd_selftest}[args.mode](args)


if __name__ == "__main__":
    sys.exit(main())
