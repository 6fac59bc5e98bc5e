#!/usr/bin/env python3
"""bench/presence: presence fan-out and MESSAGE throughput of tandemd, with Kamailio
side by side where its Debian packages are installed.

1. Fan-out: alice (privacy allow-all) has N watchers w0..w(N-1), all SUBSCRIBEd from
   one sipp process (UDP). One more sipp process changes alice's presence 2K times,
   alternating basic open/closed by modifying one publication (SIP-If-Match): first K
   changes back to back ("burst": each PUBLISH waits only for its 200), then K more
   spaced out so that each fan-out ends before the next change ("paced").
   Figures: NOTIFYs delivered per second during the burst (first PUBLISH sent to last
   NOTIFY of the burst received), and per change the latency from the PUBLISH being
   sent to the NOTIFY of that change reaching the last of the N watchers, plus the
   same per NOTIFY (each watcher's own latency).
   Clock: both sipp processes log the wall clock ([timestamp], gettimeofday, us) —
   the publisher just before sending each PUBLISH, each watcher when sipp processes
   the NOTIFY — and the PIDF note carries the change number ("change-N"), so a NOTIFY
   is matched to its change whatever the order.
2. MESSAGE: M users r0..r(M-1) register one device each, all Contacts pointing at
   one sipp UAS that answers every MESSAGE 200; one sipp UAC sends MESSAGEs to them
   with at most C outstanding. Figure: MESSAGEs per second completed with 200.

Servers are pinned to core 0 (taskset), every sipp to core 1, on loopback.

  bench/presence/run.py [--bin build/release/bin] [--watchers 1000] [--changes 10]
                        [--devices 100] [--messages 20000] [--concurrency 100]
                        [--tests fanout,message] [--no-kamailio] [--keep]

Needs: sipp (sip-tester); for the Kamailio columns kamailio (MESSAGE) and
kamailio-presence-modules + kamailio-sqlite-modules (fan-out: presence + presence_xml,
every watcher authorized, subscriptions in memory, SQLite as its database); a missing
piece skips that column with the reason printed. Each server also gets a line of its
own counters (tandem: GET /metrics; Kamailio: kamcmd stats). The CPU rows say whether
the server or the sipp side was the limit. A benchmark, not a test: it prints figures
and asserts nothing.
"""
import argparse
import json
import math
import os
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
DOMAIN = "example.com"
sys.path.insert(0, os.path.dirname(HERE))
from bench_util import free_port, wait_for, wait_for_port, write_single_server_topology  # noqa: E402

SERVER_CORE = "0"
CLIENT_CORE = "1"
KAMAILIO_MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules"
KAMAILIO_SQLITE_SCHEMA = "/usr/share/kamailio/db_sqlite"


def stop_process(process, timeout=30):
    """Ends a process this bench started: SIGTERM, then SIGKILL after `timeout` s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def cpu_seconds(pid):
    """CPU time (user + system, s) used so far by process `pid` and its direct children
    (Kamailio's workers are children of its main process; tandemd's threads are in it)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid or int(fields[1]) == pid:  # fields[1] is the parent's pid
            total += int(fields[11]) + int(fields[12])
    return total / tick


def percentile(values, p):
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


class Tandem:
    name = "tandem"

    def __init__(self, bin_dir, work, users):
        self.bin_dir = bin_dir
        self.sip_port, self.admin_port = free_port(), free_port()
        self.data_dir = os.path.join(work, f"tandem-data-{self.sip_port}")
        topology = os.path.join(work, f"bench-{self.sip_port}.toml")
        write_single_server_topology(topology, self.sip_port, self.admin_port, False, DOMAIN)
        self.log = open(os.path.join(work, f"tandemd-{self.sip_port}.log"), "w")
        self.process = subprocess.Popen(
            ["taskset", "-c", SERVER_CORE, os.path.join(bin_dir, "tandemd"), "--topology", topology,
             "--server", "fe1", "--data-dir", self.data_dir], stdout=self.log, stderr=self.log)
        try:
            wait_for_port(self.admin_port)
            wait_for(lambda: os.path.exists(os.path.join(self.data_dir, "admin.token")), 10)
            with open(os.path.join(self.data_dir, "admin.token")) as f:
                self.token = f.read().strip()
            csv = os.path.join(work, f"import-{self.sip_port}.csv")
            with open(csv, "w") as f:
                f.write("uri,pool,password\n")
                for user in users:
                    f.write(f"sip:{user}@{DOMAIN},pool1.example.com,secret\n")
            self.cli("user", "import", csv)
        except Exception:
            self.stop()
            raise

    def cli(self, *args):
        subprocess.run([os.path.join(self.bin_dir, "tandem"), "--admin", f"http://127.0.0.1:{self.admin_port}",
                        "--token-file", os.path.join(self.data_dir, "admin.token"), *args],
                       check=True, capture_output=True, timeout=120)

    def allow_all_watchers(self, presentity):
        self.cli("user", "privacy", "set", f"sip:{presentity}@{DOMAIN}", "--policy", "allow-all")

    def _get(self, path):
        request = urllib.request.Request(f"http://127.0.0.1:{self.admin_port}{path}")
        request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.read().decode()

    def status(self):
        return json.loads(self._get("/status"))

    def metrics(self):
        values = {}
        for line in self._get("/metrics").splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = values.get(name, 0) + float(value)
        return values

    def notifies_sent(self):
        return int(self.metrics().get("tandem_presence_notifies_total", 0))

    def subscribed(self, watchers):
        """True once the server holds `watchers` subscriptions (GET /status)."""
        return self.status()["sip"]["presence"]["subscriptions"] >= watchers

    def counters(self):
        """Server-side counters printed next to the figures."""
        m = self.metrics()
        keys = ("tandem_presence_notifies_total", "tandem_presence_notify_failures_total",
                "tandem_im_messages_delivered_total", "tandem_im_messages_undeliverable_total",
                "tandem_sip_overload_rejected_total", "tandem_sip_retransmissions_absorbed_total")
        return {k: int(m.get(k, 0)) for k in keys}

    def stop(self):
        stop_process(self.process)
        self.log.close()


class Kamailio:
    name = "kamailio"

    def __init__(self, work, presence):
        self.sip_port = free_port()
        run_dir = os.path.join(work, f"kamailio-run-{self.sip_port}")
        os.makedirs(run_dir, exist_ok=True)
        self.ctl = "unix:" + os.path.join(run_dir, "ctl.sock")
        command = ["taskset", "-c", SERVER_CORE, "kamailio", "-f", os.path.join(HERE, "kamailio.cfg"), "-DD", "-E",
                   "-l", f"udp:127.0.0.1:{self.sip_port}", "-l", f"tcp:127.0.0.1:{self.sip_port}",
                   "-Y", run_dir, "-m", "512", "-A", f'CTL_SOCKET="{self.ctl}"']
        if presence:
            db = os.path.join(run_dir, "kamailio.db")
            with sqlite3.connect(db) as connection:
                for schema in ("standard-create.sql", "presence-create.sql"):
                    with open(os.path.join(KAMAILIO_SQLITE_SCHEMA, schema)) as f:
                        connection.executescript(f.read())
            command += ["-A", "WITH_PRESENCE", "-A", f'DB_URL="sqlite://{db}"',
                        "-A", f'SERVER_ADDRESS="sip:127.0.0.1:{self.sip_port}"']
        self.log = open(os.path.join(work, f"kamailio-{self.sip_port}.log"), "w")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=self.log)
        try:
            wait_for_port(self.sip_port)
            if not wait_for(lambda: self.statistics() is not None, 10):
                raise RuntimeError("kamcmd cannot read Kamailio's statistics")
        except Exception:
            self.stop()
            raise

    def statistics(self):
        try:
            result = subprocess.run(["kamcmd", "-s", self.ctl, "stats.get_statistics", "all"],
                                    capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if result.returncode != 0:
            return None
        values = {}
        for match in re.finditer(r"([\w.-]+:[\w.-]+) = (\d+)", result.stdout):
            values[match.group(1)] = int(match.group(2))
        return values or None

    def notifies_sent(self):
        # Kamailio sends each NOTIFY as a tm UAC transaction; nothing else here is one.
        return (self.statistics() or {}).get("tmx:UAC_transactions", 0)

    def subscribed(self, watchers):
        return self.notifies_sent() >= watchers

    def allow_all_watchers(self, presentity):
        pass  # presence_xml force_active = 1

    def counters(self):
        s = self.statistics() or {}
        return {k: s.get(k, 0) for k in ("tmx:UAC_transactions", "tmx:2xx_transactions", "tmx:4xx_transactions",
                                          "tmx:5xx_transactions", "core:drop_replies", "core:err_requests")}

    def stop(self):
        stop_process(self.process)
        self.log.close()


class Sipp:
    """One sipp process (pinned to the client core) running a scenario text; `rows`
    become its CSV ([field0]...); `remote_port` None runs it as a UAS."""

    def __init__(self, work, name, scenario, remote_port, rows=None, calls=1, extra=(), log=False, port=None):
        self.dir = os.path.join(work, f"sipp-{name}-{free_port()}")
        os.makedirs(self.dir)
        path = os.path.join(self.dir, "scenario.xml")
        with open(path, "w") as f:
            f.write(scenario)
        self.port = port or free_port()
        self.log_path = os.path.join(self.dir, "log.txt")
        self.out_path = os.path.join(self.dir, "stdout.txt")
        command = ["taskset", "-c", CLIENT_CORE, "sipp"]
        if remote_port is not None:
            command.append(f"127.0.0.1:{remote_port}")
        command += ["-sf", path, "-t", "u1", "-i", "127.0.0.1", "-p", str(self.port), "-m", str(calls),
                    "-nostdin", "-buff_size", "4194304", "-max_recv_loops", "10000", "-max_sched_loops", "10000",
                    "-trace_err", "-error_file", os.path.join(self.dir, "errors.txt")]
        if rows:  # in UAS mode sipp refuses -inf without rows
            csv = os.path.join(self.dir, "rows.csv")
            with open(csv, "w") as f:
                f.write("SEQUENTIAL\n" + "".join(";".join(row) + ";\n" for row in rows))
            command += ["-inf", csv]
        if log:
            command += ["-trace_logs", "-log_file", self.log_path]
        command += list(extra)
        self.out = open(self.out_path, "w")
        self.started = time.monotonic()
        self.process = subprocess.Popen(command, stdout=self.out, stderr=subprocess.STDOUT, cwd=self.dir)

    def wait(self, timeout):
        """Waits up to `timeout` s (then kills); returns the exit code (None if killed)."""
        try:
            self.process.wait(timeout=timeout)
            code = self.process.returncode
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            code = None
        self.elapsed = time.monotonic() - self.started
        self.out.close()
        return code

    def stop(self):
        """Ends it now: SIGUSR1 makes sipp dump its statistics and quit; then kill."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGUSR1)
        return self.wait(timeout=10)

    def counts(self):
        """(successful, failed) calls from sipp's final statistics screen."""
        successful = failed = 0
        with open(self.out_path, errors="replace") as f:
            for line in f:
                cells = line.split("|")
                if len(cells) >= 3 and cells[0].strip() == "Successful call":
                    successful = int(cells[2].split()[0])
                elif len(cells) >= 3 and cells[0].strip() == "Failed call":
                    failed = int(cells[2].split()[0])
        return successful, failed

    def log_lines(self):
        if not os.path.exists(self.log_path):
            return []
        with open(self.log_path, errors="replace") as f:
            return f.read().splitlines()


def scenario(name, **variables):
    with open(os.path.join(HERE, name)) as f:
        text = f.read()
    for key, value in variables.items():
        text = text.replace("{{" + key + "}}", str(value))
    return text


def publisher_scenario(first_change, count, etag, pause_ms):
    """The PUBLISH steps of publish.xml for changes first_change..first_change+count-1:
    odd changes publish open, even ones closed. `etag` None starts a new publication;
    every later step modifies it. `pause_ms` > 0 waits before every step but the first."""
    with open(os.path.join(HERE, "publish.xml")) as f:
        text = f.read()
    head, rest = text.split("<!-- step begin -->", 1)
    step, tail = rest.split("<!-- step end -->", 1)
    steps = []
    for change in range(first_change, first_change + count):
        if change == first_change:
            if_match = f"SIP-If-Match: {etag}" if etag else None
        else:
            if_match = "SIP-If-Match: [$etag]"
        body = step
        if if_match:
            body = body.replace("{{if_match}}", if_match)
        else:
            body = re.sub(r"[ \t]*\{\{if_match\}\}\n", "", body)
        pause = f'<pause milliseconds="{pause_ms}" />' if pause_ms and change != first_change else ""
        body = body.replace("{{pause}}", pause).replace("{{change}}", str(change))
        steps.append(body.replace("{{basic}}", "open" if change % 2 else "closed"))
    return head + "".join(steps) + tail


def publish_log(sipp):
    """({change: send time}, last ETag) from a publisher's log."""
    sent, etag = {}, None
    for line in sipp.log_lines():
        fields = line.split()
        if len(fields) >= 5 and fields[0] == "P":
            sent[int(fields[4])] = float(fields[3])
        elif len(fields) >= 2 and fields[0] == "E":
            etag = fields[1]
    return sent, etag


def wait_until_settled(counter, target, timeout, quiet=3.0):
    """Polls `counter` until it reaches `target`, or stays unchanged for `quiet` s
    (NOTIFYs lost or coalesced), or `timeout` s pass. Returns the last value."""
    deadline = time.monotonic() + timeout
    last, last_change = counter(), time.monotonic()
    while last < target and time.monotonic() < deadline and time.monotonic() - last_change < quiet:
        time.sleep(0.25)
        value = counter()
        if value != last:
            last, last_change = value, time.monotonic()
    return last


def fan_out(server, work, watchers, changes):
    """Runs the fan-out on a started server; returns a dict of figures."""
    figures = {}
    server.allow_all_watchers("alice")
    rows = [(f"w{i}", "alice", DOMAIN) for i in range(watchers)]
    last = 2 * changes
    watch = Sipp(work, "watchers", scenario("watch.xml", last=last, idle_ms=30000), server.sip_port, rows,
                 calls=watchers, log=True,
                 extra=["-l", str(watchers), "-r", "1000", "-rp", "1000", "-timeout", "600s"])
    try:
        started = time.monotonic()
        if not wait_for(lambda: server.subscribed(watchers) and server.notifies_sent() >= watchers, 120, 0.1):
            figures["error"] = f"only {server.notifies_sent()} of {watchers} watchers subscribed in 120 s"
            return figures
        figures["subscribe_s"] = time.monotonic() - started
        time.sleep(1)  # let the watchers answer their first NOTIFY
        base = server.notifies_sent()

        # Burst: K changes back to back.
        burst = Sipp(work, "publish-burst", publisher_scenario(1, changes, None, 0), server.sip_port,
                     [("alice", "-", DOMAIN)], log=True, extra=["-timeout", "120s"])
        burst_started = time.monotonic()
        cpu_before = cpu_seconds(server.process.pid), cpu_seconds(watch.process.pid)
        code = burst.wait(timeout=150)
        sent, etag = publish_log(burst)
        if code != 0 or len(sent) != changes or not etag:
            figures["error"] = f"burst publisher failed (exit {code}, {len(sent)} PUBLISHes sent)"
            return figures
        target = base + watchers * changes
        reached = wait_until_settled(server.notifies_sent, target, 120)
        burst_seconds = time.monotonic() - burst_started
        figures["cpu_server"] = (cpu_seconds(server.process.pid) - cpu_before[0]) / burst_seconds
        figures["cpu_watchers"] = (cpu_seconds(watch.process.pid) - cpu_before[1]) / burst_seconds
        figures["server_notifies_burst"] = reached - base
        # Paced: leave each change three times what a change took during the burst.
        pace_ms = int(min(3000, max(100, 3000 * burst_seconds / changes)))
        figures["pace_ms"] = pace_ms
        time.sleep(pace_ms / 1000)
        paced = Sipp(work, "publish-paced", publisher_scenario(changes + 1, changes, etag, pace_ms),
                     server.sip_port, [("alice", "-", DOMAIN)], log=True,
                     extra=["-timeout", f"{changes * pace_ms // 1000 + 120}s"])
        code = paced.wait(timeout=changes * pace_ms / 1000 + 150)
        more, _ = publish_log(paced)
        sent.update(more)
        if code != 0 or len(more) != changes:
            figures["error"] = f"paced publisher failed (exit {code}, {len(more)} PUBLISHes sent)"
        wait_until_settled(server.notifies_sent, base + watchers * last, 60)
        if watch.wait(timeout=60) is None:
            figures["watchers_killed"] = True
        watch_ok, watch_failed = watch.counts()
        figures["watcher_calls"] = (watch_ok, watch_failed)

        # A NOTIFY the server sent again (UDP retransmission: no 200 within T1) is logged
        # again; only the first copy per (watcher, change) counts.
        first = {}  # (watcher call, change) -> first receive time
        duplicates = 0
        for line in watch.log_lines():
            fields = line.split()
            if len(fields) >= 6 and fields[0] == "N" and fields[5].isdigit():
                key = (fields[4], int(fields[5]))
                if key in first:
                    duplicates += 1
                else:
                    first[key] = float(fields[3])
        received = {}  # change -> [first receive time per watcher]
        for (_, change), at in first.items():
            received.setdefault(change, []).append(at)
        figures["duplicates"] = duplicates
        for phase, numbers in (("burst", range(1, changes + 1)), ("paced", range(changes + 1, last + 1))):
            numbers = [n for n in numbers if n in sent]
            arrivals = [t for n in numbers for t in received.get(n, [])]
            per_change = [(max(received[n]) - sent[n]) * 1000 for n in numbers if received.get(n)]
            per_notify = [(t - sent[n]) * 1000 for n in numbers for t in received.get(n, [])]
            figures[phase] = {
                "delivered": len(arrivals), "expected": watchers * len(numbers),
                "rate": len(arrivals) / (max(arrivals) - sent[numbers[0]]) if arrivals else 0.0,
                "change_p50": percentile(per_change, 50) if per_change else None,
                "change_p99": percentile(per_change, 99) if per_change else None,
                "notify_p50": percentile(per_notify, 50) if per_notify else None,
                "notify_p99": percentile(per_notify, 99) if per_notify else None,
            }
        return figures
    finally:
        if watch.process.poll() is None:
            watch.stop()


def messages(server, work, devices, count, concurrency):
    """Runs the MESSAGE throughput on a started server; returns a dict of figures."""
    figures = {}
    uas = Sipp(work, "devices", scenario("device.xml"), None, calls=count + 1000,
               extra=["-timeout", "600s"])
    try:
        time.sleep(0.3)  # sipp binds its port
        register = Sipp(work, "register", scenario("register_device.xml", contact_port=uas.port), server.sip_port,
                        [(f"r{i}", "-", DOMAIN) for i in range(devices)], calls=devices,
                        extra=["-l", "100", "-r", "1000", "-rp", "1000", "-timeout", "60s"])
        register.wait(timeout=90)
        registered, failed = register.counts()
        if registered != devices:
            figures["error"] = f"{registered} of {devices} devices registered ({failed} failed)"
            return figures
        sender = Sipp(work, "messages", scenario("message.xml"), server.sip_port,
                      [("s0", f"r{i}", DOMAIN) for i in range(devices)], calls=count,
                      extra=["-l", str(concurrency), "-r", "100000", "-rp", "1000", "-timeout", "300s"])
        cpu_before = cpu_seconds(server.process.pid), cpu_seconds(uas.process.pid)
        reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
        code = sender.wait(timeout=330)
        now = resource.getrusage(resource.RUSAGE_CHILDREN)  # + the sender, reaped by wait()
        figures["cpu_sender"] = (now.ru_utime + now.ru_stime - reaped.ru_utime - reaped.ru_stime) / sender.elapsed
        figures["cpu_server"] = (cpu_seconds(server.process.pid) - cpu_before[0]) / sender.elapsed
        figures["cpu_devices"] = (cpu_seconds(uas.process.pid) - cpu_before[1]) / sender.elapsed
        successful, failed = sender.counts()
        figures.update(successful=successful, failed=failed, exit=code, elapsed=sender.elapsed,
                       rate=successful / sender.elapsed if sender.elapsed else 0.0)
        return figures
    finally:
        uas.stop()


def kamailio_presence_missing():
    for module in ("presence.so", "presence_xml.so", "db_sqlite.so"):
        if not os.path.exists(os.path.join(KAMAILIO_MODULES, module)):
            return f"{module} missing (apt-get install kamailio-presence-modules kamailio-sqlite-modules)"
    if not os.path.exists(os.path.join(KAMAILIO_SQLITE_SCHEMA, "presence-create.sql")):
        return "the SQLite schema of kamailio-sqlite-modules is missing"
    return None


def fmt(value, spec=".0f"):
    return "-" if value is None else format(value, spec)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=os.path.join(ROOT, "build", "release", "bin"))
    parser.add_argument("--watchers", type=int, default=1000, help="watchers of alice (N)")
    parser.add_argument("--changes", type=int, default=10, help="presence changes per phase (K)")
    parser.add_argument("--devices", type=int, default=100, help="registered receiving users (M)")
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=100, help="MESSAGEs outstanding at once (sipp -l)")
    parser.add_argument("--no-kamailio", action="store_true")
    parser.add_argument("--tests", default="fanout,message", help="which to run: fanout, message or both")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, sipp output)")
    args = parser.parse_args()
    for tool in ("sipp", "taskset"):
        if not shutil.which(tool):
            sys.exit(f"bench/presence: {tool} is not installed; run scripts/install-deps.sh --bench")
    for binary in ("tandem", "tandemd"):
        if not os.path.exists(os.path.join(args.bin, binary)):
            sys.exit(f"bench/presence: no {binary} in {args.bin} (build first, or pass --bin)")

    kamailio_skip = {}
    if args.no_kamailio:
        kamailio_skip = {"message": "--no-kamailio", "presence": "--no-kamailio"}
    elif not shutil.which("kamailio") or not shutil.which("kamcmd"):
        kamailio_skip = {"message": "kamailio is not installed", "presence": "kamailio is not installed"}
    elif kamailio_presence_missing():
        kamailio_skip = {"presence": kamailio_presence_missing()}

    work = tempfile.mkdtemp(prefix="tandem-bench-presence-")
    users = ["alice", "s0"] + [f"w{i}" for i in range(args.watchers)] + [f"r{i}" for i in range(args.devices)]
    results = {"fanout": {}, "message": {}}
    try:
        for kind in ("tandem", "kamailio"):
            for test in [t for t in ("fanout", "message") if t in args.tests.split(",")]:
                reason = kamailio_skip.get("presence" if test == "fanout" else "message")
                if kind == "kamailio" and reason:
                    results[test][kind] = {"skipped": reason}
                    continue
                print(f"running: {kind} {test}", flush=True)
                try:
                    server = (Tandem(args.bin, work, users) if kind == "tandem"
                              else Kamailio(work, presence=(test == "fanout")))
                except Exception as error:  # a server that does not start is a skipped column
                    results[test][kind] = {"skipped": f"did not start: {error}"}
                    continue
                try:
                    before = server.counters()
                    if test == "fanout":
                        figures = fan_out(server, work, args.watchers, args.changes)
                    else:
                        figures = messages(server, work, args.devices, args.messages, args.concurrency)
                    after = server.counters()
                    figures["counters"] = {k: after[k] - before.get(k, 0) for k in after}
                except Exception as error:
                    figures = {"error": f"{type(error).__name__}: {error}"}
                finally:
                    server.stop()
                results[test][kind] = figures
        report(args, results)
    finally:
        if args.keep:
            print(f"\nwork directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def report(args, results):
    kinds = ("tandem", "kamailio")
    print(f"\nPresence fan-out: alice with {args.watchers} watchers (one sipp, UDP); {args.changes} changes back to "
          f"back (burst), then {args.changes} paced; server on core {SERVER_CORE}, sipp on core {CLIENT_CORE}.")
    fanout = results["fanout"]
    for kind in kinds:
        f = fanout.get(kind, {"skipped": "not run (--tests)"})
        if "skipped" in f:
            print(f"  {kind}: skipped ({f['skipped']})")
        elif "error" in f:
            print(f"  {kind}: error: {f['error']}")
    shown = [k for k in kinds if k in fanout and "burst" in fanout[k]]
    if shown:
        print(f"  {'':<46}" + "".join(f"{k:>14}" for k in shown))

        def row(label, pick):
            print(f"  {label:<46}" + "".join(f"{pick(fanout[k]):>14}" for k in shown))
        row("subscribe all watchers (s)", lambda f: fmt(f.get("subscribe_s"), ".2f"))
        row("burst: NOTIFYs received / expected",
            lambda f: f"{f['burst']['delivered']}/{f['burst']['expected']}")
        row("burst: NOTIFYs per second", lambda f: fmt(f["burst"]["rate"]))
        row("burst: PUBLISH -> last watcher p50 (ms)", lambda f: fmt(f["burst"]["change_p50"], ".1f"))
        row("burst: PUBLISH -> last watcher p99 (ms)", lambda f: fmt(f["burst"]["change_p99"], ".1f"))
        row("paced: interval between changes (ms)", lambda f: str(f.get("pace_ms", "-")))
        row("paced: NOTIFYs received / expected",
            lambda f: f"{f['paced']['delivered']}/{f['paced']['expected']}")
        row("paced: PUBLISH -> last watcher p50 (ms)", lambda f: fmt(f["paced"]["change_p50"], ".1f"))
        row("paced: PUBLISH -> last watcher p99 (ms)", lambda f: fmt(f["paced"]["change_p99"], ".1f"))
        row("paced: PUBLISH -> each NOTIFY p50 (ms)", lambda f: fmt(f["paced"]["notify_p50"], ".1f"))
        row("paced: PUBLISH -> each NOTIFY p99 (ms)", lambda f: fmt(f["paced"]["notify_p99"], ".1f"))
        row("burst: server CPU (share of its core)", lambda f: fmt(100 * f["cpu_server"], ".0f") + "%")
        row("burst: watchers' sipp CPU (share of its core)", lambda f: fmt(100 * f["cpu_watchers"], ".0f") + "%")
        row("NOTIFYs received again (retransmissions)", lambda f: str(f.get("duplicates", "-")))
        row("watcher calls ok/failed", lambda f: "{}/{}".format(*f.get("watcher_calls", ("-", "-"))))
        if len(shown) == 2:
            a, b = (fanout[k]["burst"]["rate"] for k in shown)
            print(f"  burst NOTIFY/s ratio tandem/kamailio: {a / b:.2f}" if b else "")
    print("  (p99 of the per-change figures is over the changes of the phase: with few changes, the worst one)")

    print(f"\nMESSAGE throughput: {args.devices} registered users, one device each (one sipp UAS); "
          f"{args.messages} MESSAGEs, at most {args.concurrency} outstanding, each answered 200 by the device.")
    message = results["message"]
    for kind in kinds:
        m = message.get(kind, {"skipped": "not run (--tests)"})
        if "skipped" in m:
            print(f"  {kind}: skipped ({m['skipped']})")
        elif "error" in m:
            print(f"  {kind}: error: {m['error']}")
        else:
            print(f"  {kind:<10}{m['rate']:>10.0f} MESSAGE/s   {m['successful']} ok, {m['failed']} failed "
                  f"in {m['elapsed']:.2f} s; server CPU {100 * m['cpu_server']:.0f}% of its core, "
                  f"sipp: devices {100 * m['cpu_devices']:.0f}% + sender {100 * m['cpu_sender']:.0f}% of theirs")
    if all("rate" in message.get(k, {}) for k in kinds) and message["kamailio"]["rate"]:
        print(f"  ratio tandem/kamailio: {message['tandem']['rate'] / message['kamailio']['rate']:.2f}")

    print("\nServer counters during each run:")
    for test in ("fanout", "message"):
        for kind in kinds:
            counters = results[test].get(kind, {}).get("counters")
            if counters:
                print(f"  {test:<8}{kind:<10}" + ", ".join(f"{k}={v}" for k, v in counters.items()))


if __name__ == "__main__":
    main()
