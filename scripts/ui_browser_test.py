#!/usr/bin/env python3
"""The web UI in a real browser, against real processes.

Starts 3 raft-rm, 2 workers and 2 coordinators (c1, c2) on free loopback
ports, with linearizable groups under `global` (`global.etl` for alice,
limit 2 with 5 queue slots; `global.adhoc.${USER}` for the rest) and an
eventual group `dash` (eve; limit 3, staleness bound 1000 ms). On c1 it
runs a real TPC-H query, then long simulated queries in both modes: two
running and one queued in `global.etl`, one running in
`global.adhoc.bob`, two running in `dash`. Then it opens the UI
of c2 (the coordinator that runs none of them) in headless Chromium driven
by WebDriver (selenium, with Debian's chromium and chromium-driver) and
checks that:

- the cluster page names the leader the RMs' `/v1/health` names, and lists
  both workers and both coordinators;
- the resource-groups page shows, per group, the running and queued
  counts of the RMs' `/v1/resource-groups` and of c2's `/ui/api/groups`;
- the queries page lists every query of c1, and its user filter works;
- a query page of one of c1's queries, opened on c2, is c1's account
  relayed by an RM: owner c1, the RM's address, the fencing token of the
  RMs' ledger;
- the browser logged no errors;

and saves a screenshot of each page in OUT_DIR. BROWSER is `chromium`
(the default) or `firefox` (Firefox ESR and geckodriver, its script errors
read over WebDriver BiDi). Bounded (about a minute); everything it started
is stopped, also on failure. Exit 0 also when the browser or selenium is
missing, after one line saying so. Usage:

    scripts/ui_browser_test.py BIN_DIR OUT_DIR [BROWSER]
"""
import json
import os
import shutil
import sys
import threading
import time
import urllib.request

from local_cluster import LocalCluster, get, wait_for

SIMULATED_MS = 60_000


class Query(threading.Thread):
    """One query through Trino's protocol, polled until it ends or `stop`."""

    def __init__(self, port, user, sql, session=None):
        super().__init__(daemon=True)
        self.port, self.user, self.sql, self.session = port, user, sql, session or {}
        self.id, self.state, self.error = None, None, None
        self.submitted = threading.Event()
        self.ready = threading.Event()
        self.stop = threading.Event()

    def run(self):
        headers = {"X-Trino-User": self.user}
        if self.session:
            headers["X-Trino-Session"] = ",".join(f"{k}={v}" for k, v in self.session.items())
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/v1/statement",
                                     data=self.sql.encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                answer = json.load(r)
            self.id = answer["id"]
            self.state = answer["stats"]["state"]
            self.submitted.set()
            while True:
                self.state = answer["stats"]["state"]
                self.error = answer.get("error")
                if self.state != "QUEUED" or self.stop.is_set():
                    self.ready.set()
                nxt = answer.get("nextUri")
                if not nxt or self.stop.is_set():
                    break
                with urllib.request.urlopen(nxt, timeout=10) as r:
                    answer = json.load(r)
        except Exception as e:  # reported by the caller's checks
            self.error = str(e)
        finally:
            self.submitted.set()
            self.ready.set()


def browser(kind, out_dir):
    """A headless browser driven by WebDriver, and a function answering the
    JavaScript errors it saw; or None (with the reason)."""
    try:
        from selenium import webdriver
    except ImportError:
        return None, None, "no selenium package (pip install selenium)"
    # Selenium must not look for drivers on the network: this machine
    # reaches nothing but its package registries.
    os.environ["SE_OFFLINE"] = "true"
    if kind == "firefox":
        from selenium.webdriver.firefox.service import Service
        firefox = shutil.which("firefox-esr") or shutil.which("firefox")
        driver_path = shutil.which("geckodriver")
        if not firefox or not driver_path:
            return None, None, ("no firefox or geckodriver (as root: apt-get install -y firefox-esr; "
                                "cargo install geckodriver)")
        opts = webdriver.FirefoxOptions()
        opts.binary_location = firefox
        opts.add_argument("-headless")
        # WebDriver BiDi: Firefox reports its script errors as events.
        opts.enable_bidi = True
        driver = webdriver.Firefox(service=Service(driver_path), options=opts)
        seen = []
        driver.script.add_javascript_error_handler(lambda e: seen.append(getattr(e, "text", str(e))))
        driver.set_window_size(1400, 900)
        return driver, lambda: list(seen), None
    from selenium.webdriver.chrome.service import Service
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        return None, None, "no chromium or chromedriver (as root: apt-get install -y chromium chromium-driver)"
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                 f"--user-data-dir={os.path.join(out_dir, 'profile')}"]:
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    driver.set_window_size(1400, 900)

    def errors():
        return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    return driver, errors, None


def rendered(driver, page, after=0, timeout=15):
    """Waits until `page` has rendered more than `after` times; the count."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        seen = driver.execute_script(
            "return [document.body.dataset.page, document.body.dataset.renders]")
        if seen[0] == page and int(seen[1] or 0) > after:
            return int(seen[1])
        time.sleep(0.1)
    raise AssertionError(f"the {page} page never rendered (saw {seen})")


def text(driver, css):
    """The text of the first element matching `css`, read in the page's own
    thread: the pages redraw every second, and an element found in one
    WebDriver call may be gone by the next."""
    value = driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent.trim() : null;", css)
    if value is None:
        raise AssertionError(f"nothing on the page matches {css}")
    return value


def texts(driver, css):
    """The texts of every element matching `css`, read at once."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]), e => e.textContent.trim());", css)


def agree(what, read_page, read_json, timeout=15):
    """Polls until the page shows what the JSON says (both may move)."""
    deadline = time.time() + timeout
    while True:
        want, shown = read_json(), read_page()
        if want == shown:
            return shown
        if time.time() > deadline:
            raise AssertionError(f"{what}: the page shows {shown}, the JSON says {want}")
        time.sleep(0.3)


def check_pages(driver, js_errors, c2, rm_ports, queries, out_dir):
    from selenium.webdriver.common.by import By
    ui = f"http://127.0.0.1:{c2}/ui/"
    rm = f"http://127.0.0.1:{rm_ports[0]}"

    driver.get(ui + "#/cluster")
    n = rendered(driver, "cluster")
    agree("the leader", lambda: text(driver, "#leader-id"),
          lambda: str(get(rm + "/v1/health")["leader_id"]))
    for name in ["w1", "w2"]:
        text(driver, f'tr[data-worker="{name}"] td')
    for name in ["c1", "c2"]:
        text(driver, f'tr[data-coordinator="{name}"] td')
    rendered(driver, "cluster", n)
    driver.save_screenshot(os.path.join(out_dir, "cluster.png"))

    driver.get(ui + "#/groups")
    n = rendered(driver, "groups")

    groups = ("global", "global.etl", "global.adhoc", "global.adhoc.bob", "dash")

    def shown():
        return {g: tuple(int(text(driver, f'tr[data-group="{g}"] td[data-field="{f}"] .num'))
                         for f in ("running", "queued")) for g in groups}

    def rms_view():
        view = get(rm + "/v1/resource-groups")
        return {g["id"]: (g["running"], g["queued"]) for g in view["groups"] if g["id"] in groups}

    def c2_json():
        page = get(f"http://127.0.0.1:{c2}/ui/api/groups")
        return {g["id"]: (g["running"], g["queued"]) for g in page["groups"] if g["id"] in groups}

    counts = agree("running and queued per group (RMs' view)", shown, rms_view)
    agree("running and queued per group (c2's JSON)", shown, c2_json)
    assert counts == {"global": (3, 1), "global.etl": (2, 1), "global.adhoc": (1, 0),
                      "global.adhoc.bob": (1, 0), "dash": (2, 0)}, counts
    assert "eventual" in text(driver, 'tr[data-group="dash"] td[data-field="mode"]')
    assert "linearizable" in text(driver, 'tr[data-group="global.etl"] td[data-field="mode"]')
    rendered(driver, "groups", n)
    driver.save_screenshot(os.path.join(out_dir, "groups.png"))

    driver.get(ui + "#/queries")
    rendered(driver, "queries")
    for q in queries:
        assert text(driver, f'tr[data-query="{q.id}"] td[data-field="coordinator"]') == "c1"
    driver.save_screenshot(os.path.join(out_dir, "queries.png"))
    box = driver.find_element(By.ID, "filter-user")
    box.send_keys("eve")
    deadline = time.time() + 10
    while True:
        users = set(texts(driver, 'tr[data-query] td[data-field="user"]'))
        if users == {"eve"}:
            break
        assert time.time() < deadline, f"the user filter shows {users}"
        time.sleep(0.2)

    running = next(q for q in queries if q.user == "alice" and q.state == "RUNNING")
    driver.get(ui + f"#/query/{running.id}")
    rendered(driver, "query")
    assert text(driver, "#query-id") == running.id
    assert text(driver, "#query-owner") == "c1", text(driver, "#query-owner")
    via = text(driver, "#query-proxied-via")
    assert via in {f"127.0.0.1:{p}" for p in rm_ports}, f"proxied via {via!r}"
    entry = get(f"{rm}/v1/admission/queries/{running.id}")
    assert text(driver, "#query-fencing-token") == str(entry["fencing_token"]), entry
    assert text(driver, "#query-state") == "RUNNING"
    assert "SELECT" in text(driver, "#query-sql")
    driver.save_screenshot(os.path.join(out_dir, "query.png"))

    errors = js_errors()
    assert not errors, f"the browser logged errors: {errors}"
    return counts, via


GROUPS = {
    "rootGroups": [
        {"name": "global", "hardConcurrencyLimit": 10, "maxQueued": 20, "softMemoryLimit": "1GB",
         "subGroups": [
             {"name": "etl", "hardConcurrencyLimit": 2, "maxQueued": 5},
             {"name": "adhoc", "hardConcurrencyLimit": 4, "maxQueued": 10,
              "subGroups": [{"name": "${USER}", "hardConcurrencyLimit": 1, "maxQueued": 2}]}]},
        {"name": "dash", "hardConcurrencyLimit": 3, "maxQueued": 10,
         "consistency": {"mode": "eventual", "maxStalenessMs": 1000}}],
    "selectors": [{"user": "eve", "group": "dash"}, {"user": "alice", "group": "global.etl"},
                  {"group": "global.adhoc.${USER}"}],
}


def main(bin_dir, out_dir, kind="chromium"):
    os.makedirs(out_dir, exist_ok=True)
    driver, js_errors, why = browser(kind, out_dir)
    if driver is None:
        print(f"skipping the web UI browser test in {kind}: {why}")
        return
    queries = []
    try:
        with LocalCluster(bin_dir, GROUPS, workers=["w1", "w2"], coordinators=["c1", "c2"]) as cluster:
            c1, c2 = cluster.coordinators["c1"], cluster.coordinators["c2"]
            wait_for("both coordinators announced", lambda: len(
                [c for c in get(cluster.rm + "/v1/coordinators")["coordinators"] if c["addr"]]) == 2)
            real = Query(c1, "alice", "SELECT count(*) FROM tpch.tiny.nation")
            real.start()
            real.join(60)
            assert real.state == "FINISHED", (real.state, real.error)
            sim = {"simulate_duration_ms": str(SIMULATED_MS), "simulate_memory_bytes": "1000000"}
            for i, user in enumerate(("alice", "alice", "alice", "eve", "eve", "bob")):
                q = Query(c1, user, "SELECT * FROM simulated", sim)
                q.start()
                queries.append(q)
                if i == 2:
                    # The third in `global.etl` queues: its group is full.
                    q.submitted.wait(20)
                    time.sleep(0.5)
                else:
                    q.ready.wait(20)
            states = sorted((q.user, q.state) for q in queries)
            assert states == [("alice", "QUEUED"), ("alice", "RUNNING"), ("alice", "RUNNING"),
                              ("bob", "RUNNING"), ("eve", "RUNNING"), ("eve", "RUNNING")], states
            try:
                counts, via = check_pages(driver, js_errors, c2, cluster.rm_ports, queries, out_dir)
            except BaseException:
                driver.save_screenshot(os.path.join(out_dir, "failure.png"))
                raise
        print(f"web UI browser test ({kind}): c2's pages agree with the JSON API ({counts}), "
              f"the leader, a c1 query proxied through RM {via}; no console errors; "
              f"screenshots in {out_dir}")
    finally:
        for q in queries:
            q.stop.set()
        try:
            driver.quit()
        except Exception:
            pass
        shutil.rmtree(os.path.join(out_dir, "profile"), ignore_errors=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
