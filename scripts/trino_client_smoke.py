#!/usr/bin/env python3
"""A real Trino client (trino-python-client) against real processes.

Starts 3 raft-rm, 1 worker and 1 coordinator on free loopback ports, runs
queries through the `trino` DB-API client, checks the answers (Python
values of every type, metadata statements, USE, Trino's errors), then the
22 TPC-H queries at tpch.tiny against DuckDB as the oracle
(jepsen/tpch/tpch_check.py; skipped with one line without the duckdb
package), and stops everything (also on failure). Bounded: about a minute.
Usage:

    scripts/trino_client_smoke.py BIN_DIR
"""
import datetime
import decimal
import os
import subprocess
import sys
import time

import trino

from local_cluster import LocalCluster


def sql_checks(port):
    """Real SQL through the client: values, metadata, USE, errors."""
    conn = trino.dbapi.connect(host="127.0.0.1", port=port, user="alice", http_scheme="http")
    cur = conn.cursor()
    n = 0

    def rows(sql):
        nonlocal n
        n += 1
        cur.execute(sql)
        return cur.fetchall()

    nation = rows("SELECT * FROM tpch.tiny.nation ORDER BY nationkey")
    assert len(nation) == 25 and nation[0][:3] == [0, "ALGERIA", 0], nation[:2]
    assert [d[0] for d in cur.description] == ["nationkey", "name", "regionkey", "comment"], cur.description
    assert rows("SELECT count(*) FROM tpch.tiny.lineitem") == [[60175]]
    assert [d[0] for d in cur.description] == ["_col0"], cur.description
    typed = rows("SELECT CAST(1.5 AS DECIMAL(10,2)) AS d, DATE '2024-01-02' AS dt, true AS b, "
                 "NULL AS z, 2.5 * 2 AS f, 'x' AS s, 7 AS i, "
                 "orderdate FROM tpch.tiny.orders WHERE orderkey = 1")
    assert typed == [[decimal.Decimal("1.50"), datetime.date(2024, 1, 2), True, None, 5.0, "x", 7,
                      datetime.date(1996, 1, 2)]], typed
    assert rows("SHOW CATALOGS") == [["system"], ["tpch"]]
    assert ["tiny"] in rows("SHOW SCHEMAS FROM tpch")
    assert rows("SHOW TABLES FROM tpch.tiny")[:2] == [["customer"], ["lineitem"]]
    assert rows("DESCRIBE tpch.tiny.nation")[1][:2] == ["name", "varchar(25)"]
    # USE changes the client's path (X-Trino-Set-Catalog/Schema).
    rows("USE tpch.tiny")
    assert rows("SELECT count(*) FROM region") == [[5]]
    assert ["w1"] in [r[:1] for r in rows("SELECT node_id FROM system.runtime.nodes")]
    states = rows("SELECT state FROM system.runtime.queries")
    assert ["FINISHED"] in states and ["RUNNING"] in states, states
    for sql, name in [("SELECT * FROM nope", "TABLE_NOT_FOUND"),
                      ("SELECT nope FROM nation", "COLUMN_NOT_FOUND"),
                      ("SELECT * FROM tpch.nope.nation", "SCHEMA_NOT_FOUND"),
                      ("INSERT INTO nation VALUES (1)", "NOT_SUPPORTED"),
                      ("SELECT *\nFROM nation WHERE", "SYNTAX_ERROR")]:
        try:
            rows(sql)
            raise SystemExit(f"{sql!r} should fail with {name}")
        except trino.exceptions.TrinoUserError as e:
            assert e.error_name == name, (sql, e)
            if name == "SYNTAX_ERROR":
                assert e.error_location == (2, 18), e.error_location
    return n


def tpch_against_duckdb(port):
    """The 22 TPC-H queries, each matching DuckDB or NOT_SUPPORTED."""
    try:
        import duckdb  # noqa: F401
    except ImportError:
        print("skipping the TPC-H correctness check: no duckdb package (pip install duckdb)")
        return
    here = os.path.dirname(os.path.abspath(__file__))
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                         "raft-rm", "tpch", "tiny")
    subprocess.run([sys.executable, os.path.join(here, "..", "jepsen", "tpch", "tpch_check.py"),
                    "check", "--server", f"http://127.0.0.1:{port}", "--schema", "tiny",
                    "--parquet-dir", cache], check=True, timeout=240)


def main(bin_dir):
    groups = {"rootGroups": [{"name": "etl", "hardConcurrencyLimit": 1, "maxQueued": 1}],
              "selectors": [{"group": "etl"}]}
    with LocalCluster(bin_dir, groups, workers=["w1"], coordinators=["c1"],
                      worker_memory_bytes=4 << 30) as cluster:
        coord_port = cluster.coordinators["c1"]
        conn = trino.dbapi.connect(host="127.0.0.1", port=coord_port, user="alice", http_scheme="http")
        cur = conn.cursor()
        cur.execute("SELECT 1")
        rows = cur.fetchall()
        assert rows == [[1]], rows
        assert [d[0] for d in cur.description] == ["_col0"], cur.description

        sim = trino.dbapi.connect(host="127.0.0.1", port=coord_port, user="alice", http_scheme="http",
                                  session_properties={"simulate_duration_ms": "300",
                                                      "simulate_memory_bytes": "1000"})
        cur = sim.cursor()
        start_t = time.time()
        cur.execute("SELECT * FROM simulated")
        assert cur.fetchall() == []
        took = time.time() - start_t
        assert took >= 0.3, took
        assert cur.stats["state"] == "FINISHED", cur.stats

        checked = sql_checks(coord_port)
        print("trino-python-client smoke: SELECT 1, simulated %.2fs, %d SQL checks as expected" % (took, checked))
        tpch_against_duckdb(coord_port)


if __name__ == "__main__":
    main(sys.argv[1])
