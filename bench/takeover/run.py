#!/usr/bin/env python3
"""bench/takeover: how long a pool server's users are unreachable after kill -9.

One three-server SQLite pool (default lease timers: renew 1 s, expiry 3 s), 60 users
registered through fe1 with their contacts on a small device this script runs (a UDP
socket answering every MESSAGE with 200). Each trial kills one server (in turn) with
SIGKILL, then sends MESSAGEs through a survivor to every user still unanswered, every
100 ms, and measures from the kill to the moment the last user answered again — no
client registers again. The killed server is then restarted (it takes its routing
groups back from the store) before the next trial. Prints each trial, p50 and p99.

  bench/takeover/run.py [--bin build/release/bin] [--trials 20]

Back-end (PostgreSQL) failover time is bench/backend/run.py.

A benchmark, not a test: it prints figures (target: p99 <= 5 s; Skype for Business
server pooling: users sign in again after a Front End fails).
"""
import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from bench_util import wait_for  # noqa: E402

USERS = 60
SERVERS = ["fe1", "fe2", "fe3"]


class Device(threading.Thread):
    """Every user's phone: answers each MESSAGE with 200 (echoing the dialog headers)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def run(self):
        while True:
            data, peer = self.sock.recvfrom(65535)
            text = data.decode(errors="replace")
            if not text.startswith("MESSAGE "):
                continue
            head = text.split("\r\n\r\n", 1)[0].split("\r\n")
            keep = [h for h in head[1:] if h.split(":", 1)[0].strip().lower() in ("via", "from", "call-id", "cseq")]
            to = next(h for h in head[1:] if h.split(":", 1)[0].strip().lower() == "to")
            self.sock.sendto(("SIP/2.0 200 OK\r\n" + "\r\n".join(keep) + f"\r\n{to};tag=dev\r\n"
                              "Content-Length: 0\r\n\r\n").encode(), peer)


class Client:
    """A UDP SIP client that sends requests and collects final responses by Call-ID."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.answers = {}
        self.lock = threading.Lock()
        threading.Thread(target=self._receive, daemon=True).start()
        self.n = 0

    def _receive(self):
        while True:
            data, _ = self.sock.recvfrom(65535)
            text = data.decode(errors="replace")
            status = re.match(r"SIP/2.0 (\d+)", text)
            call = re.search(r"\r\nCall-ID:\s*(\S+)", text, re.I)
            if status and call and int(status.group(1)) >= 200:
                with self.lock:
                    self.answers[call.group(1)] = int(status.group(1))

    def send(self, port, method, user, extra=""):
        self.n += 1
        call_id = f"bench-{self.n}-{time.monotonic_ns()}"
        body = "hi" if method == "MESSAGE" else ""
        sender = "user0" if method == "MESSAGE" else user
        message = (f"{method} sip:{user}@example.com SIP/2.0\r\n"
                   f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK{self.n}x{time.monotonic_ns()};rport\r\n"
                   f"From: <sip:{sender}@example.com>;tag=b{self.n}\r\nTo: <sip:{user}@example.com>\r\n"
                   f"Call-ID: {call_id}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n{extra}"
                   f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n{body}")
        self.sock.sendto(message.encode(), ("127.0.0.1", port))
        return call_id

    def answer(self, call_id):
        with self.lock:
            return self.answers.get(call_id)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=os.path.join(ROOT, "build", "release", "bin"))
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    os.environ["TANDEM_BIN_DIR"] = args.bin
    import tandem_harness as h  # noqa: E402 (needs TANDEM_BIN_DIR first)

    d = h.Deployment(h.topology_text([{"fqdn": "pool1.example.com", "site": "siteA", "servers": SERVERS}],
                                     sip_extra="authenticate = false"))
    restarted = {}  # server id -> the tandemd process this script restarted
    try:
        d.up()
        users_csv = os.path.join(d.dir, "users.csv")
        with open(users_csv, "w") as f:
            f.write("uri,pool,password\n" + "".join(f"sip:user{i}@example.com,pool1.example.com,pw{i}\n"
                                                    for i in range(USERS)))
        d.tandem("user", "import", users_csv, check=True)
        ports = {s: int(re.search(r":(\d+)$", d.status(s)["sip"]["sip"]).group(1)) for s in SERVERS}
        pids = {s: d.server(s)["pid"] for s in SERVERS}
        device, client = Device(), Client()
        device.start()

        def all_live():
            for s in SERVERS:
                try:
                    code, body = d.admin(s, "/pool/status?local=1")
                except OSError:
                    return False
                if code != 200 or json.loads(body)["live_servers"] != len(SERVERS):
                    return False
            return True

        wait_for(all_live, 30)
        contact = f"Contact: <sip:dev@127.0.0.1:{device.port}>\r\nExpires: 3600\r\n"
        calls = [client.send(ports["fe1"], "REGISTER", f"user{i}", contact) for i in range(USERS)]
        if not wait_for(lambda: all(client.answer(c) == 200 for c in calls), 30):
            raise SystemExit("registration failed")

        def written_back():
            """Every server has written its soft state back (what a server accepted in the
            last ~100 ms before it dies is the window this design may lose)."""
            for s in SERVERS:
                code, body = d.admin(s, "/metrics")
                found = re.search(r"^tandem_pool_soft_state_queued_rows (\S+)$", body, re.M)
                if code != 200 or not found or float(found.group(1)) != 0:
                    return False
            return True

        def reach_all(via_port, deadline_s):
            """The time.monotonic() at which every user had answered a MESSAGE sent
            through `via_port` (sent anew every 100 ms while unanswered), or None."""
            begin = time.monotonic()
            pending = {f"user{i}": [] for i in range(USERS)}
            while time.monotonic() - begin < deadline_s:
                for user, calls in list(pending.items()):
                    if any(client.answer(c) == 200 for c in calls):
                        del pending[user]
                    else:
                        calls.append(client.send(via_port, "MESSAGE", user))
                if not pending:
                    return time.monotonic()
                time.sleep(0.1)
            return None

        if reach_all(ports["fe1"], 10) is None:
            raise SystemExit("the users are not reachable before any kill\n" + d.logs())
        print("takeover: kill -9 of one server of three, until every user answers a MESSAGE again "
              f"({USERS} users, lease renew 1 s / expiry 3 s, no re-registration)")
        print(f"{'trial':<7}{'killed':<8}{'reachable s':>12}")
        figures = []
        for trial in range(args.trials):
            victim = SERVERS[trial % len(SERVERS)]
            survivor = SERVERS[(trial + 1) % len(SERVERS)]
            wait_for(written_back, 10)
            killed = time.monotonic()
            os.kill(pids[victim], signal.SIGKILL)
            if victim in restarted:
                restarted[victim].wait()
            reached = reach_all(ports[survivor], 30)
            took = None if reached is None else reached - killed
            print(f"{trial + 1:<7}{victim:<8}" + ("   unreachable" if took is None else f"{took:12.2f}"), flush=True)
            if took is not None:
                figures.append(took)
            # Bring the victim back; it takes its groups back from the store.
            with open(os.path.join(d.dir, f"{victim}-{trial}.log"), "w") as log:
                restarted[victim] = subprocess.Popen([h.TANDEMD, "--topology", d.topology_path, "--server", victim,
                                                      "--data-dir", d.data_dir], stdout=log, stderr=subprocess.STDOUT)
            pids[victim] = restarted[victim].pid
            if not wait_for(all_live, 30) or reach_all(ports[victim], 30) is None:
                raise SystemExit(f"{victim} did not come back")
        if figures:
            figures.sort()
            p99 = figures[min(len(figures) - 1, int(round(0.99 * (len(figures) - 1))))]
            print(f"\nkill -9 to all users reachable: p50 {statistics.median(figures):.2f} s, "
                  f"p99 {p99:.2f} s, max {figures[-1]:.2f} s over {len(figures)} trials (target p99 <= 5 s)")
    finally:
        for process in restarted.values():
            if process.poll() is None:
                process.kill()
            process.wait()
        d.close()


if __name__ == "__main__":
    main()
