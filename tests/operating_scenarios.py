"""Real-socket scenarios for operating an embedded server, run in a child process: credentials
replaced from another thread, a Prometheus scrape after traffic, a schemathesis run against
the OpenAPI description.  (See facade_scenarios for why a child process.)"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from serverapi import ThreadedAPIServer

from .scenarios import ScenarioSet

CREDENTIALS = {"alice": "password123", "bob": "securepassword"}
scenario = ScenarioSet()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPENAPI = os.path.join(ROOT, "serverapi", "openapi.json")
EXAMPLES = os.path.join(ROOT, "examples")
SCHEMATHESIS_EXAMPLES = 25
SCHEMATHESIS_CONFIG = """
# Every check (as --checks all would, but leaving the per-operation settings below in force).
[checks]
enabled = true

# OPTIONS without Origin is not a CORS preflight: serverapi answers 405 (Allow: POST), as the
# description documents; Schemathesis's default statuses for a missing required header lack it.
[[operations]]
include-method = "OPTIONS"
checks.missing_required_header.expected-statuses = [405]

# POST /logout without a cookie is 400 "Session token required." (the contract's answer, and
# the description's), where ignored_auth expects 401 or 403.  Its unknown-token case (401) and
# every other check still run for it.
[[operations]]
include-path = "/logout"
include-method = "POST"
checks.ignored_auth.enabled = false

# The operations that need a session (POST /communicate, /logout) get the cookie of a real
# login, fetched again after a 401 (a /logout ends it); /login itself is sent without one.
[auth.dynamic.openapi.sessionCookie]
path = "/login"
payload = { username = "alice", password = "s3cret-password" }
extract_from = "cookie"
extract_selector = "sessionToken"
"""

def echo(username: str, token: str, data: dict[str, Any]) -> tuple[bool, bool, dict[str, Any]]:
    """Echo the body back."""
    return False, False, {"echo": data, "user": username}


def post(port: int, path: str, body: Any, token: str | None = None) -> tuple[int, Any, str]:
    """POST JSON on a new connection; status, decoded body, Set-Cookie."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Cookie"] = f"sessionToken={token}"
    connection.request("POST", path, json.dumps(body), headers)
    response = connection.getresponse()
    result = response.status, json.loads(response.read()), response.getheader("Set-Cookie", "")
    connection.close()
    return result


def login(port: int, username: str, password: str) -> str | None:
    """Log in; the token, or None if refused."""
    status, _, cookie = post(port, "/login", {"username": username, "password": password})
    if status != 200:
        return None
    return cookie.split(";")[0].split("=", 1)[1]


@scenario
def set_credentials_while_running() -> Any:
    """From another thread: bad input raises and keeps the old; a good mapping swaps, ends
    the removed user's session, and survives a restart."""
    server = ThreadedAPIServer("127.0.0.1", 0, CREDENTIALS, echo)
    server.startAPIServer(block=False)
    alice, bob = login(server.port, "alice", "password123"), login(server.port, "bob",
                                                                   "securepassword")
    errors = []
    for bad in (["alice"], {"alice": 1}, {"": "x"}):
        try:
            server.setCredentials(bad)  # type: ignore[arg-type]
        except (TypeError, ValueError) as error:
            errors.append(type(error).__name__)
    still = post(server.port, "/communicate", {}, bob)[0]
    done: list[Any] = []
    swapper = threading.Thread(target=lambda: done.append(
        server.setCredentials({"alice": "password123", "carol": "pw"})))
    swapper.start()
    swapper.join(10)
    after = {"alice": post(server.port, "/communicate", {}, alice)[0],
             "bob": post(server.port, "/communicate", {}, bob)[0],
             "carol_login": login(server.port, "carol", "pw") is not None,
             "bob_login": login(server.port, "bob", "securepassword") is not None}
    sessions = sorted(session.username for session in server.getSessions())
    server.stopAPIServer()
    server.startAPIServer(block=False)
    restarted = login(server.port, "carol", "pw") is not None
    server.stopAPIServer()
    return {"errors": errors, "bob_before": still, "returned": done, "after": after,
            "sessions": sessions, "carol_after_restart": restarted}


@scenario
def set_credentials_before_start() -> Any:
    """Credentials set before the first start are the ones served."""
    server = ThreadedAPIServer("127.0.0.1", 0, CREDENTIALS, echo)
    server.setCredentials({"dave": "pw"})
    with server:
        return {"dave": login(server.port, "dave", "pw") is not None,
                "alice": login(server.port, "alice", "password123") is not None}


@scenario
def metrics_scrape() -> Any:
    """Real traffic, then a scrape of /metrics through prometheus_client's MetricsResource,
    parsed with prometheus_client.parser; /healthz while serving; the API port has no
    /metrics."""
    server = ThreadedAPIServer("127.0.0.1", 0, CREDENTIALS, echo, login_attempts=2,
                               metrics_endpoint="tcp:0:interface=127.0.0.1")
    with server:
        port, metrics = server.port, server.metrics_port
        token = login(port, "alice", "password123")
        for index in range(5):
            post(port, "/communicate", {"n": index}, token)
        post(port, "/communicate", {}, "not-a-token")
        for _ in range(3):
            post(port, "/login", {"username": "bob", "password": "wrong"})
        post(port, "/logout", {}, token)
        base = f"http://127.0.0.1:{metrics}"
        with urllib.request.urlopen(base + "/healthz", timeout=10) as response:
            health = response.status, json.loads(response.read())
        with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
            text = response.read().decode("utf-8")
        api_metrics = post(port, "/metrics", {})[0]
    samples: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{key}={value}" for key, value in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return {"health": health, "api_metrics": api_metrics,
            "serverapi": {name: value for name, value in samples.items()
                          if name.startswith("serverapi_")
                          and "_bucket" not in name},
            "process_metrics": any(name.startswith("process_") for name in samples)}


@scenario
def schemathesis_run() -> Any:
    """schemathesis, every check, a fixed number of derandomized examples per operation,
    against a live server serving the shipped OpenAPI description's contract."""
    # Generated logins fail, and the test's own logins must never be throttled.
    server = ThreadedAPIServer("127.0.0.1", 0, {"alice": "s3cret-password"}, echo,
                               cors_origins=["https://app.example.com"], login_attempts=10_000)
    folder = tempfile.mkdtemp()
    config = os.path.join(folder, "schemathesis.toml")
    with open(config, "w", encoding="utf-8") as handle:
        handle.write(SCHEMATHESIS_CONFIG)
    with server:
        completed = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "--config-file", config, "run", OPENAPI,
             "--url", f"http://127.0.0.1:{server.port}",
             "--max-examples", str(SCHEMATHESIS_EXAMPLES), "--generation-deterministic",
             "--workers", "1", "--no-color", "--report", "ndjson", "--report-dir", folder],
            capture_output=True, text=True, timeout=120, cwd=folder)
    statuses: dict[str, int] = {}
    checks: set[str] = set()
    for name in os.listdir(folder):
        if name.endswith(".ndjson"):
            with open(os.path.join(folder, name), encoding="utf-8") as handle:
                for line in handle:
                    _tally(json.loads(line), statuses, checks)
    shutil.rmtree(folder)
    return {"returncode": completed.returncode, "output": completed.stdout[-3000:],
            "statuses": statuses, "checks": sorted(checks)}


def _load_example(name: str) -> Any:
    """Import an example file as a module (its main() does not run)."""
    import importlib.util

    path = os.path.join(EXAMPLES, name)
    spec = importlib.util.spec_from_file_location("example_" + name[:-3], path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@scenario
def client_recipes() -> Any:
    """examples/clients.py (requests, httpx, treq) against a TLS server requiring client
    certificates, with REQUESTS_CA_BUNDLE set to a bundle without the server's CA, and over
    plain HTTP; and the two pitfalls it avoids, shown failing."""
    import warnings

    import certifi
    import httpx
    import requests

    folder = tempfile.mkdtemp()
    files = _load_example("tls_server.py").make_certificates(folder)
    server = ThreadedAPIServer("127.0.0.1", 0, {"alice": "password123"}, echo)
    server.setConnectionSecurityParams(certfile=files["server_cert"],
                                       keyfile=files["server_key"], cafile=files["ca"])
    plain = ThreadedAPIServer("127.0.0.1", 0, {"alice": "password123"}, echo)
    environment = {**os.environ, "REQUESTS_CA_BUNDLE": certifi.where()}
    results: dict[str, Any] = {}
    with server, plain:
        base = f"https://127.0.0.1:{server.port}"
        for name, arguments in (("tls", [base, folder]),
                                ("plain", [f"http://127.0.0.1:{plain.port}"])):
            completed = subprocess.run(
                [sys.executable, os.path.join(EXAMPLES, "clients.py"), *arguments],
                capture_output=True, text=True, timeout=60, env=environment)
            results[name] = (json.loads(completed.stdout) if completed.returncode == 0
                             else completed.stderr[-2000:])
        os.environ["REQUESTS_CA_BUNDLE"] = certifi.where()
        try:
            session = requests.Session()
            session.verify = files["ca"]
            session.cert = (files["client_cert"], files["client_key"])
            session.post(base + "/login", json={}, timeout=10)
            results["requests_session_verify"] = "worked"
        except requests.exceptions.SSLError:
            results["requests_session_verify"] = "SSLError"
        finally:
            del os.environ["REQUESTS_CA_BUNDLE"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                with httpx.Client(verify=files["ca"], cert=(files["client_cert"],
                                                            files["client_key"])) as client:
                    client.post(base + "/login", json={})
                results["httpx_verify_string"] = "worked"
            except httpx.TransportError as error:
                results["httpx_verify_string"] = ("certificate required"
                                                  if "CERTIFICATE_REQUIRED" in str(error)
                                                  else repr(error))
    shutil.rmtree(folder)
    return results


@scenario
def metrics_example() -> Any:
    """examples/metrics_server.py's server: the API, the access log, /healthz and /metrics."""
    module = _load_example("metrics_server.py")
    folder = tempfile.mkdtemp()
    access_log = os.path.join(folder, "access.log")
    server = module.build_server(port=0, metrics="tcp:0:interface=127.0.0.1",
                                 access_log=access_log)
    with server:
        token = login(server.port, "alice", "password123")
        answer = post(server.port, "/communicate", {"message": "hi"}, token)[:2]
        base = f"http://127.0.0.1:{server.metrics_port}"
        with urllib.request.urlopen(base + "/healthz", timeout=10) as response:
            health = response.status
        with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
            text = response.read().decode("utf-8")
    with open(access_log, encoding="ascii") as handle:
        lines = handle.read().splitlines()
    shutil.rmtree(folder)
    return {"answer": answer, "health": health,
            "communicate_200": 'serverapi_requests_total{code="200",endpoint="communicate"} 1.0'
            in text, "access_lines": [line.split('"')[1] for line in lines]}


def _tally(value: Any, statuses: dict[str, int], checks: set[str]) -> None:
    """Count "METHOD /path status" over every response in a report event; note check names."""
    if isinstance(value, dict):
        request, response = value.get("request"), value.get("response")
        if isinstance(request, dict) and isinstance(response, dict) and "status_code" in response:
            path = str(request.get("uri", "")).split("?")[0].rsplit("/", 1)[-1]
            key = f"{request.get('method')} /{path} {response['status_code']}"
            statuses[key] = statuses.get(key, 0) + 1
        if isinstance(value.get("name"), str) and "status" in value:
            checks.add(value["name"])
        for item in value.values():
            _tally(item, statuses, checks)
    elif isinstance(value, list):
        for item in value:
            _tally(item, statuses, checks)

if __name__ == "__main__":
    scenario.main(sys.argv[1:])
