#!/usr/bin/env python3
"""trino-python-client over HTTPS with passwords, against real processes.

Starts `jepsen cluster --tls` (3 RMs, 1 worker, 1 coordinator; a
throw-away CA, mutual TLS between the processes, the coordinator taking
passwords) with a selector on the authenticated user, then checks, as a
Trino user would see it:

- the right password: a real query's rows, over HTTPS, verified against
  the cluster's CA;
- a wrong password: 401 `Access Denied: Invalid credentials`;
- no password over HTTPS: 401 `Unauthorized`;
- JWTs signed HS256 with the cluster's key: taken; expired, or signed
  with another key: 401; impersonation by a token's subject: 403;
- selectors: `me`'s own query lands in the group of `authenticatedUser:
  me`; acting as `dashboard` (the rules allow it), in the group of
  `originalUser: me` with `user: dashboard`; acting as `alice` is 403
  `Access Denied: User me cannot impersonate user alice`;
- a password over plain HTTP (a plain coordinator of a second, plain
  cluster): 401 `Password not allowed for insecure authentication`
  (trino-python-client itself refuses to send one unless told to).

Bounded (about 30 s); everything it started is stopped. Usage:

    scripts/tls_smoke.py BIN_DIR
"""
import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import trino

from local_cluster import LocalCluster

# requests prefers these over a session's own CA file (its
# `merge_environment_settings`): the cluster's CA must win here.
for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
    os.environ.pop(var, None)

GROUPS = {
    "rootGroups": [
        {"name": "global", "hardConcurrencyLimit": 8, "maxQueued": 100,
         "subGroups": [{"name": "${USER}", "hardConcurrencyLimit": 2, "maxQueued": 20}]},
        {"name": "operators", "hardConcurrencyLimit": 4, "maxQueued": 10},
        {"name": "dashboards", "hardConcurrencyLimit": 4, "maxQueued": 10},
    ],
    "selectors": [{"originalUser": "me", "user": "dashboard", "group": "dashboards"},
                  {"authenticatedUser": "me", "group": "operators"},
                  {"group": "global.${USER}"}],
}


def start_tls_cluster(bin_dir, work):
    groups = os.path.join(work, "groups.json")
    with open(groups, "w") as f:
        json.dump(GROUPS, f)
    out = open(os.path.join(work, "cluster.out"), "w+")
    proc = subprocess.Popen(
        [f"{bin_dir}/jepsen", "cluster", "--bin-dir", bin_dir, "--tls", "--base-port", "0",
         "--exit-after", "120", "--dir", os.path.join(work, "cluster"), "--workers", "1",
         "--coordinators", "1", "--resource-groups", groups],
        stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        out.seek(0)
        text = out.read()
        m = re.search(r"Trino clients: https://([\d.]+):(\d+) .*BasicAuthentication\('me', '([0-9a-f]+)'\), "
                      r"verify='([^']+)'", text)
        if m:
            return proc, m.group(1), int(m.group(2)), m.group(3), m.group(4)
        if proc.poll() is not None:
            raise SystemExit(f"jepsen cluster --tls exited:\n{text}")
        time.sleep(0.2)
    raise SystemExit("jepsen cluster --tls printed no Trino client line within 60 s")


def connect(host, port, ca, user, password=None):
    auth = trino.auth.BasicAuthentication("me", password) if password is not None else None
    return trino.dbapi.connect(host=host, port=port, user=user, http_scheme="https",
                               auth=auth, verify=ca).cursor()


def refused(cur, sql, status, text):
    try:
        cur.execute(sql)
        cur.fetchall()
    except trino.exceptions.HttpError as e:
        assert str(status) in str(e) and text in str(e), f"wanted {status} {text!r}, got {e}"
        return
    raise SystemExit(f"{sql!r} should be refused with {status} {text!r}")


def resource_group(host, port, ca, password, query_id):
    req = urllib.request.Request(
        f"https://{host}:{port}/v1/query/{query_id}",
        headers={"Authorization": "Basic " + base64.b64encode(f"me:{password}".encode()).decode()})
    import ssl
    with urllib.request.urlopen(req, context=ssl.create_default_context(cafile=ca), timeout=5) as r:
        return json.load(r)["resourceGroupId"]


def main(bin_dir):
    work = tempfile.mkdtemp(prefix="tls-smoke-")
    proc, host, port, password, ca = start_tls_cluster(bin_dir, work)
    checks = 0
    try:
        cur = connect(host, port, ca, "me", password)
        deadline = time.time() + 30
        while True:
            try:
                cur.execute("SELECT count(*) FROM tpch.tiny.nation")
                assert cur.fetchall() == [[25]]
                break
            except trino.exceptions.TrinoQueryError:
                raise
            except Exception:
                # The coordinator may still be registering its session.
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
                cur = connect(host, port, ca, "me", password)
        assert resource_group(host, port, ca, password, cur.query_id) == ["operators"]
        checks += 2
        refused(connect(host, port, ca, "me", "wrong"), "SELECT 1", 401, "Access Denied: Invalid credentials")
        refused(connect(host, port, ca, "me"), "SELECT 1", 401, "Unauthorized")
        checks += 2
        cur = connect(host, port, ca, "dashboard", password)
        cur.execute("SELECT 1")
        assert cur.fetchall() == [[1]]
        assert resource_group(host, port, ca, password, cur.query_id) == ["dashboards"], \
            "originalUser is the authenticated user, user the impersonated one"
        refused(connect(host, port, ca, "alice", password), "SELECT 1", 403,
                "Access Denied: User me cannot impersonate user alice")
        checks += 2
        # JWTs: HS256 with the cluster's key (jepsen cluster --tls makes one).
        key = open(os.path.join(work, "cluster", "tls", "jwt-hs256.key")).read().strip().encode()
        now = int(time.time())

        def token(claims, secret=key):
            b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
            signed = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(claims).encode())
            mac = hmac.new(secret, signed.encode(), hashlib.sha256).digest()
            return signed + "." + b64(mac)

        def with_token(t, user="me"):
            return trino.dbapi.connect(host=host, port=port, user=user, http_scheme="https",
                                       auth=trino.auth.JWTAuthentication(t), verify=ca).cursor()

        cur = with_token(token({"sub": "me", "exp": now + 300}))
        cur.execute("SELECT 1")
        assert cur.fetchall() == [[1]]
        refused(with_token(token({"sub": "me", "exp": now - 10})), "SELECT 1", 401, "an expired JWT")
        refused(with_token(token({"sub": "me"}, b"x" * 40)), "SELECT 1", 401, "does not verify")
        refused(with_token(token({"sub": "me"}), "alice"), "SELECT 1", 403,
                "Access Denied: User me cannot impersonate user alice")
        checks += 4
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    plain = {"rootGroups": [{"name": "g", "hardConcurrencyLimit": 2, "maxQueued": 2}],
             "selectors": [{"group": "g"}]}
    with LocalCluster(bin_dir, plain) as cluster:
        url = f"http://127.0.0.1:{cluster.coordinators['c1']}/v1/statement"
        req = urllib.request.Request(url, data=b"SELECT 1", method="POST", headers={
            "X-Trino-User": "me",
            "Authorization": "Basic " + base64.b64encode(b"me:secret").decode()})
        try:
            urllib.request.urlopen(req, timeout=5)
            raise SystemExit("a password over plain HTTP was taken")
        except urllib.error.HTTPError as e:
            body = e.read().decode()
            assert e.code == 401 and body == "Password not allowed for insecure authentication", (e.code, body)
            assert e.headers["WWW-Authenticate"] == 'Basic realm="Trino"', e.headers
        try:
            trino.dbapi.connect(host="127.0.0.1", port=cluster.coordinators["c1"], user="me",
                                http_scheme="http",
                                auth=trino.auth.BasicAuthentication("me", "secret"))
            raise SystemExit("trino-python-client would send a password over plain HTTP")
        except trino.exceptions.TrinoAuthError:
            pass
        # Told to send it anyway, the client gets the coordinator's answer.
        insecure = trino.dbapi.connect(host="127.0.0.1", port=cluster.coordinators["c1"], user="me",
                                       http_scheme="http", allow_insecure_auth=True,
                                       auth=trino.auth.BasicAuthentication("me", "secret")).cursor()
        refused(insecure, "SELECT 1", 401, "Password not allowed for insecure authentication")
        checks += 2
    print(f"TLS smoke: trino-python-client over HTTPS with passwords, {checks} checks as expected "
          "(right, wrong and missing password; JWT right, expired, forged; impersonation allowed "
          "and refused; authenticatedUser and originalUser selectors; a password over plain HTTP refused)")


if __name__ == "__main__":
    main(sys.argv[1])
