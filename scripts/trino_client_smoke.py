#!/usr/bin/env python3
"""A real Trino client (trino-python-client) against real processes.

Starts 3 raft-rm, 1 worker and 1 coordinator on free loopback ports, runs
queries through the `trino` DB-API client, checks the answers, and stops
everything (also on failure). Bounded: about 20 s. Usage:

    scripts/trino_client_smoke.py BIN_DIR
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import trino


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, check, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def main(bin_dir):
    work = tempfile.mkdtemp(prefix="trino-smoke-")
    groups = os.path.join(work, "groups.json")
    with open(groups, "w") as f:
        json.dump({"rootGroups": [{"name": "etl", "hardConcurrencyLimit": 1, "maxQueued": 1}],
                   "selectors": [{"group": "etl"}]}, f)
    rm_ports = [free_port() for _ in range(3)]
    rms = ",".join(f"127.0.0.1:{p}" for p in rm_ports)
    peers = ",".join(f"{i + 1}=127.0.0.1:{p}" for i, p in enumerate(rm_ports))
    coord_port = free_port()
    procs = []
    log = open(os.path.join(work, "processes.log"), "w")

    def start(*args):
        procs.append(subprocess.Popen(args, stdout=log, stderr=log))

    try:
        for i, p in enumerate(rm_ports):
            start(f"{bin_dir}/raft-rm", "--id", str(i + 1), "--listen", f"127.0.0.1:{p}",
                  "--data-dir", os.path.join(work, f"rm{i + 1}"), "--peers", peers,
                  "--resource-groups", groups)
        start(f"{bin_dir}/worker", "--id", "w1", "--listen", f"127.0.0.1:{free_port()}",
              "--rm", rms, "--memory-bytes", "1000000", "--heartbeat-ms", "200")
        start(f"{bin_dir}/coordinator", "--id", "c1", "--listen", f"127.0.0.1:{coord_port}",
              "--rm", rms, "--resource-groups", groups)

        def memory_has_worker():
            with urllib.request.urlopen(f"http://127.0.0.1:{rm_ports[0]}/v1/memory", timeout=2) as r:
                return json.load(r)["workers"] == 1

        def coordinator_ready():
            with urllib.request.urlopen(f"http://127.0.0.1:{coord_port}/v1/info", timeout=2) as r:
                return not json.load(r)["starting"]

        wait_for("the worker to report", memory_has_worker)
        wait_for("the coordinator's session", coordinator_ready)

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

        try:
            conn.cursor().execute("SELECT 2").fetchall()
            raise SystemExit("SELECT 2 should fail")
        except trino.exceptions.TrinoUserError as e:
            assert e.error_name == "NOT_SUPPORTED", e

        print("trino-python-client smoke: 3 queries as expected (SELECT 1, simulated %.2fs, NOT_SUPPORTED)" % took)
    except BaseException:
        # Say what the processes said before the evidence is removed.
        log.flush()
        with open(os.path.join(work, "processes.log")) as f:
            tail = f.readlines()[-40:]
        sys.stderr.write("---- last lines of the processes' logs\n" + "".join(tail))
        raise
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1])
