"""Real processes on free loopback ports, for the Python checks in scripts/:
3 raft-rm, workers and coordinators, started from BIN_DIR with a
resource-groups file, ready when every worker reports and every
coordinator holds a session, and stopped (with the last lines of their
logs on failure) when the `with` block ends.

    with LocalCluster(bin_dir, groups, workers=["w1"], coordinators=["c1"]) as c:
        c.coordinators["c1"]   # its port
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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


def wait_for(what, check, timeout=30):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            if check():
                return
        except Exception as e:  # not up yet
            last = e
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what} (last error: {last})")


class LocalCluster:
    def __init__(self, bin_dir, groups, workers=("w1",), coordinators=("c1",),
                 worker_memory_bytes=1 << 30):
        self.bin_dir, self.groups = bin_dir, groups
        self.worker_names, self.coordinator_names = list(workers), list(coordinators)
        self.worker_memory_bytes = worker_memory_bytes
        self.rm_ports = [free_port() for _ in range(3)]
        self.coordinators = {name: free_port() for name in self.coordinator_names}
        self.procs = []

    @property
    def rm(self):
        """The first RM's base URL."""
        return f"http://127.0.0.1:{self.rm_ports[0]}"

    def _start(self, *args):
        self.procs.append(subprocess.Popen(args, stdout=self.log, stderr=self.log))

    def __enter__(self):
        self.work = tempfile.mkdtemp(prefix="local-cluster-")
        self.log = open(os.path.join(self.work, "processes.log"), "w")
        try:
            self._up()
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def _up(self):
        groups = os.path.join(self.work, "groups.json")
        with open(groups, "w") as f:
            json.dump(self.groups, f)
        rms = ",".join(f"127.0.0.1:{p}" for p in self.rm_ports)
        peers = ",".join(f"{i + 1}=127.0.0.1:{p}" for i, p in enumerate(self.rm_ports))
        b = self.bin_dir
        for i, p in enumerate(self.rm_ports):
            self._start(f"{b}/raft-rm", "--id", str(i + 1), "--listen", f"127.0.0.1:{p}",
                        "--data-dir", os.path.join(self.work, f"rm{i + 1}"), "--peers", peers,
                        "--resource-groups", groups)
        for w in self.worker_names:
            self._start(f"{b}/worker", "--id", w, "--listen", f"127.0.0.1:{free_port()}",
                        "--rm", rms, "--memory-bytes", str(self.worker_memory_bytes),
                        "--heartbeat-ms", "200")
        for name, port in self.coordinators.items():
            self._start(f"{b}/coordinator", "--id", name, "--listen", f"127.0.0.1:{port}",
                        "--rm", rms, "--resource-groups", groups)
        n = len(self.worker_names)
        wait_for(f"{n} worker(s) to report", lambda: get(self.rm + "/v1/memory")["workers"] == n)
        for port in self.coordinators.values():
            wait_for("the coordinators' sessions",
                     lambda: not get(f"http://127.0.0.1:{port}/v1/info")["starting"])

    def __exit__(self, kind, value, tb):
        if kind is not None:
            # Say what the processes said before the evidence is removed.
            self.log.flush()
            with open(os.path.join(self.work, "processes.log")) as f:
                tail = f.readlines()[-40:]
            sys.stderr.write("---- last lines of the processes' logs\n" + "".join(tail))
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        self.log.close()
        shutil.rmtree(self.work, ignore_errors=True)
        return False
