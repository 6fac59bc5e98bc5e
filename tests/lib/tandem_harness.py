"""Shared helpers for tandem's multi-process tests.

Tests drive the real `tandem` and `tandemd` binaries over real sockets and files.
They never sleep for a fixed time: `wait_until` polls a condition with a deadline.
Ports come from the kernel (bind to port 0) so tests can run in parallel.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

BIN_DIR = os.environ.get("TANDEM_BIN_DIR", os.path.join(os.path.dirname(__file__), "../../build/bin"))
SOURCE_DIR = os.environ.get("TANDEM_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))
TANDEM = os.path.join(BIN_DIR, "tandem")
TANDEMD = os.path.join(BIN_DIR, "tandemd")


def wait_until(predicate, timeout=20.0, what="condition", interval=0.05):
    """Polls `predicate` until it returns a truthy value; fails the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last value: {last!r})")


def free_ports(count, host="127.0.0.1"):
    """`count` distinct ports the kernel picked as free (all held open at once, then released)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def topology_text(pools, cms_master="pool1.example.com", sync_interval=2, extra="", sip_extra=""):
    """A topology file. `pools` is a list of dicts: fqdn, site, servers (list of ids),
    optional backup_pool, edition, backend (TOML inline table text). Ports are free ones.
    `sip_extra` is added to the [sip] section."""
    lines = ['[sip]', 'domain = "example.com"', sip_extra, '', '[cms]', f'master_pool = "{cms_master}"', '',
             '[backup]', f'sync_interval_seconds = {sync_interval}', '']
    # All ports at once: ports released between two calls may be handed out again.
    ports = iter(free_ports(2 * sum(len(p["servers"]) for p in pools)))
    for site in sorted({p["site"] for p in pools}):
        lines += ['[[sites]]', f'name = "{site}"', '']
    for pool in pools:
        servers = pool["servers"]
        edition = pool.get("edition", "standard" if len(servers) == 1 else "enterprise")
        backend = pool.get("backend", f'{{ type = "sqlite", path = "{pool["fqdn"].split(".")[0]}.db" }}')
        lines += ['[[pools]]', f'fqdn = "{pool["fqdn"]}"', f'site = "{pool["site"]}"', f'edition = "{edition}"',
                  f'backend = {backend}']
        if pool.get("backup_pool"):
            lines.append(f'backup_pool = "{pool["backup_pool"]}"')
        lines.append('')
        for server_id in servers:
            lines += ['[[pools.servers]]', f'id = "{server_id}"', 'address = "127.0.0.1"',
                      f'sip_port = {next(ports)}', f'admin_port = {next(ports)}', '']
    return "\n".join(lines) + extra


def two_site_pools():
    return [
        {"fqdn": "pool1.example.com", "site": "siteA", "servers": ["p1fe1", "p1fe2", "p1fe3"],
         "backup_pool": "pool2.example.com"},
        {"fqdn": "pool2.example.com", "site": "siteB", "servers": ["p2fe1", "p2fe2", "p2fe3"],
         "backup_pool": "pool1.example.com"},
    ]


def run_tandem(args, data_dir=None, check=False, timeout=60):
    command = [TANDEM] + (["--data-dir", data_dir] if data_dir else []) + list(args)
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def http(method, url, token=None, body=None, timeout=5):
    """Returns (status, body text). Transport errors raise."""
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(url, data=data, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def sip_exchange(port, request, timeout=5):
    """Sends one SIP request over UDP from a fresh socket ("{local}" in it becomes that
    socket's port); returns the first final response."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(timeout)
        local = s.getsockname()[1]
        s.sendto(request.replace("{local}", str(local)).encode(), ("127.0.0.1", port))
        while True:
            response = s.recv(65536).decode()
            if not re.match(r"SIP/2\.0 1\d\d ", response):
                return response


def register_request(user, branch=None):
    """An unauthenticated REGISTER for sip:USER@example.com (a 401, 301 or 200 follows)."""
    branch = branch or "z9hG4bK" + uuid.uuid4().hex
    return (f"REGISTER sip:example.com SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{{local}};branch={branch};rport\r\n"
            f"From: <sip:{user}@example.com>;tag=r1\r\nTo: <sip:{user}@example.com>\r\n"
            f"Call-ID: {uuid.uuid4().hex}\r\nCSeq: 1 REGISTER\r\n"
            f"Contact: <sip:{user}@127.0.0.1:{{local}}>\r\nExpires: 600\r\nMax-Forwards: 70\r\n"
            f"Content-Length: 0\r\n\r\n")


def process_state(pid):
    """'R', 'S', 'Z'... for a live or zombie process, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def is_running(pid):
    state = process_state(pid)
    return state is not None and state not in ("Z", "X")


def processes_mentioning(text):
    """PIDs of live processes whose command line contains `text`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and is_running(int(entry)):
            found.append(int(entry))
    return found


class AcknowledgedWrites(threading.Thread):
    """Calls write(n) for n = 0, 1, ... (at most `limit` times) until stopped, and keeps
    every n whose write returned True: the writes a server acknowledged. A write that
    raises OSError (server down) or returns False is not acknowledged; the stream then
    pauses `pause` s, so an outage is not a busy loop."""

    def __init__(self, write, limit=100000, pause=0.01):
        super().__init__(daemon=True)
        self.write, self.limit, self.pause = write, limit, pause
        self.acknowledged = []
        self.stopping = threading.Event()

    def run(self):
        for n in range(self.limit):
            if self.stopping.is_set():
                return
            try:
                acknowledged = self.write(n)
            except OSError:
                acknowledged = False
            if acknowledged:
                self.acknowledged.append(n)
            else:
                self.stopping.wait(self.pause)

    def stop(self):
        self.stopping.set()
        self.join(30)


class Deployment:
    """A topology started with `tandem up --detach` in a temporary data dir; `close()`
    runs `tandem down` and kills by PID anything this deployment started that is left."""

    def __init__(self, topology, name="topology.toml"):
        self.dir = tempfile.mkdtemp(prefix="tandem-test-")
        self.data_dir = os.path.join(self.dir, "data")
        self.topology_path = os.path.join(self.dir, name)
        with open(self.topology_path, "w") as f:
            f.write(topology)
        self.pids = []

    def up(self, check=True):
        result = run_tandem(["up", self.topology_path, "--detach"], self.data_dir)
        if check and result.returncode != 0:
            raise AssertionError(f"tandem up failed:\n{result.stdout}\n{result.stderr}\n{self.logs()}")
        if result.returncode == 0:
            self.pids = [s["pid"] for s in self.state()["servers"]]
        return result

    def state(self):
        with open(os.path.join(self.data_dir, "up.json")) as f:
            return json.load(f)

    def token(self):
        with open(os.path.join(self.data_dir, "admin.token")) as f:
            return f.read().strip()

    def server(self, server_id):
        return next(s for s in self.state()["servers"] if s["id"] == server_id)

    def admin(self, server_id, path, method="GET", body=None, token=True):
        return http(method, self.server(server_id)["admin_url"] + path, self.token() if token else None, body)

    def metric(self, server_id, name):
        """A metric's value on a server (the first series of that name), 0 when absent."""
        code, body = self.admin(server_id, "/metrics")
        found = re.search(r"^%s(?:\{[^}]*\})? ([0-9.e+]+)$" % re.escape(name), body, re.M) if code == 200 else None
        return float(found.group(1)) if found else 0

    def sip_port(self, server_id):
        return int(self.status(server_id)["sip"]["sip"].rsplit(":", 1)[1])

    def status(self, server_id):
        """The server's /status, or None while it does not answer."""
        try:
            code, body = self.admin(server_id, "/status")
        except OSError:
            return None
        return json.loads(body) if code == 200 else None

    def tandem(self, *args, check=False):
        return run_tandem(list(args), self.data_dir, check=check)

    def logs(self):
        out = []
        servers_dir = os.path.join(self.data_dir, "servers")
        if os.path.isdir(servers_dir):
            for server_id in sorted(os.listdir(servers_dir)):
                path = os.path.join(servers_dir, server_id, "tandemd.log")
                if os.path.exists(path):
                    with open(path) as f:
                        out.append(f"--- {server_id} ---\n" + f.read()[-3000:])
        return "\n".join(out)

    def close(self):
        if os.path.exists(os.path.join(self.data_dir, "up.json")):
            run_tandem(["down"], self.data_dir)
        for pid in self.pids + processes_mentioning(self.data_dir):
            if is_running(pid):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


SCENARIOS = os.path.join(SOURCE_DIR, "tests", "interop", "scenarios")


class Sipp:
    """One sipp process running a scenario from tests/interop/scenarios against a
    tandemd SIP port. `rows` fill [field0], [field1]...; the first row's user and
    password answer digest challenges; `variables` replace {{NAME}} in the scenario
    (sipp itself allows no variable where a scenario needs a number, such as the
    expected response code); `extra_args` go to sipp as they are."""

    def __init__(self, sip_port, scenario, rows, transport="u1", calls=1, local_port=None, variables=None,
                 server_mode=False, extra_args=()):
        self.work = tempfile.mkdtemp(prefix="sipp-")
        csv = os.path.join(self.work, "rows.csv")
        with open(csv, "w") as f:
            f.write("SEQUENTIAL\n" + "".join(f"{';'.join(row)};\n" for row in rows))
        self.local_port = local_port or free_ports(1)[0]
        self.errors = os.path.join(self.work, "errors.log")
        with open(os.path.join(SCENARIOS, scenario)) as f:
            text = f.read()
        for name, value in (variables or {}).items():
            text = text.replace("{{" + name + "}}", str(value))
        scenario_path = os.path.join(self.work, scenario)
        with open(scenario_path, "w") as f:
            f.write(text)
        command = ["sipp", f"127.0.0.1:{sip_port}", "-sf", scenario_path, "-t", transport, "-i", "127.0.0.1", "-p", str(self.local_port), "-m", str(calls),
                   "-timeout", "30s", "-timeout_error", "-nostdin", "-trace_err", "-error_file", self.errors]
        if rows:
            command += ["-inf", csv]
        if rows and len(rows[0]) >= 3:
            # sipp 3.6 takes credentials only from -au/-ap, and puts its target address in
            # the digest uri unless told the Request-URI.
            command += ["-au", rows[0][0], "-ap", rows[0][1], "-auth_uri", rows[0][2]]
        if server_mode:
            command = [c for c in command if c != f"127.0.0.1:{sip_port}"]
        command += list(extra_args)  # e.g. ("-r", "500", "-l", "200"): rate and concurrency
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        cwd=self.work)

    def wait(self, timeout=60):
        """Waits for sipp to end; returns (exit code, diagnostics text)."""
        try:
            out, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate()
        errors = ""
        if os.path.exists(self.errors):
            with open(self.errors) as f:
                errors = f.read()[-3000:]
        shutil.rmtree(self.work, ignore_errors=True)
        return self.process.returncode, f"sipp exit {self.process.returncode}\n{out[-1500:]}\n{err[-1500:]}\n{errors}"

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
        self.wait()


def run_sipp(sip_port, scenario, rows, **kwargs):
    return Sipp(sip_port, scenario, rows, **kwargs).wait()


def start_device(testcase, d, user, password, server_id):
    """A sipp UAS waiting for one MESSAGE, registered (digest) as `user`'s device
    through `server_id` of Deployment `d`; stopped when `testcase` ends."""
    device = Sipp(d.sip_port(server_id), "uas_message.xml", [], server_mode=True)
    testcase.addCleanup(device.stop)
    code, diagnostics = run_sipp(d.sip_port(server_id), "register_contact.xml", [(user, password, "example.com")],
                                 variables={"contact_port": device.local_port})
    testcase.assertEqual(code, 0, diagnostics + d.logs())
    return device
