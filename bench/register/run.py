#!/usr/bin/env python3
"""bench/register: REGISTER throughput of tandemd against Kamailio, side by side.

Both registrars run pinned to the same one core (taskset), sipp on the other, on
loopback; UDP and TCP, without and with digest authentication (MD5, qop=auth).
Prints registrations per second for each and the ratio tandem/Kamailio, then
tandemd's resident memory per registered user at 100,000 registrations.

  bench/register/run.py [--bin build/release/bin] [--calls 20000] [--users 10000] [--memory-users 100000]
                        [--auth none|digest|both] [--memory-users 0 to skip the memory figure]

Needs: sipp (sip-tester) and kamailio (scripts/install-deps.sh --bench).
This is a benchmark, not a test: it prints figures and asserts nothing.
"""
import argparse
import hashlib
import os
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
PASSWORD = "secret"
sys.path.insert(0, os.path.dirname(HERE))
from bench_util import free_port, wait_for_port, write_single_server_topology  # noqa: E402

SERVER_CORE = "0"
CLIENT_CORE = "1"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Tandem:
    name = "tandem"

    def __init__(self, bin_dir, work, users, authenticate):
        self.bin_dir, self.work = bin_dir, work
        self.sip_port, admin_port = free_port(), free_port()
        self.data_dir = os.path.join(work, f"tandem-data-{self.sip_port}")
        topology = os.path.join(work, f"bench-{self.sip_port}.toml")
        write_single_server_topology(topology, self.sip_port, admin_port, authenticate)
        self.admin_url = f"http://127.0.0.1:{admin_port}"
        log = open(os.path.join(work, f"tandemd-{self.sip_port}.log"), "w")
        self.process = subprocess.Popen(
            ["taskset", "-c", SERVER_CORE, os.path.join(bin_dir, "tandemd"), "--topology", topology,
             "--server", "fe1", "--data-dir", self.data_dir], stdout=log, stderr=log)
        wait_for_port(admin_port)
        csv = os.path.join(work, f"import-{users}.csv")
        if not os.path.exists(csv):
            with open(csv, "w") as f:
                f.write("uri,pool,password\n")
                for i in range(users):
                    f.write(f"sip:user{i}@example.com,pool1.example.com,{PASSWORD}\n")
        subprocess.run([os.path.join(bin_dir, "tandem"), "--admin", f"http://127.0.0.1:{admin_port}",
                        "--token-file", os.path.join(self.data_dir, "admin.token"), "user", "import", csv],
                       check=True, capture_output=True)

    def metric(self, name):
        with open(os.path.join(self.data_dir, "admin.token")) as f:
            token = f.read().strip()
        request = urllib.request.Request(self.admin_url + "/metrics", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        return None

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)


class Kamailio:
    name = "kamailio"

    def __init__(self, work, users, authenticate):
        self.sip_port = free_port()
        # Shared memory: with digest the registrar is stateful, and at ~2,000 calls/s the
        # transactions in their 5 s wait timer need more than 512 MB (tm then answers 500).
        command = ["taskset", "-c", SERVER_CORE, "kamailio", "-f", os.path.join(HERE, "kamailio.cfg"), "-DD", "-E",
                   "-l", f"udp:127.0.0.1:{self.sip_port}", "-l", f"tcp:127.0.0.1:{self.sip_port}",
                   "-Y", os.path.join(work, f"kamailio-run-{self.sip_port}"), "-m", "2048"]
        if authenticate:
            command += ["-A", "WITH_AUTH", "-A", f'DBURL="sqlite://{subscriber_db(work, users)}"']
        os.makedirs(os.path.join(work, f"kamailio-run-{self.sip_port}"), exist_ok=True)
        self.log = open(os.path.join(work, f"kamailio-{self.sip_port}.log"), "w")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=self.log)
        wait_for_port(self.sip_port)

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)


def subscriber_db(work, users, domain="example.com"):
    """Kamailio's auth_db subscriber table holding the users tandem is given: HA1
    only (ha1 over "user", ha1b over "user@domain"), as tandem stores them."""
    path = os.path.join(work, f"kamailio-subscriber-{users}.db")
    if os.path.exists(path):
        return path

    def md5(text):
        return hashlib.md5(text.encode()).hexdigest()

    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")  # as tandem's store; kept in the file
    db.executescript("""
        CREATE TABLE version (id INTEGER PRIMARY KEY NOT NULL, table_name VARCHAR(32) NOT NULL,
                              table_version INTEGER DEFAULT 0 NOT NULL,
                              CONSTRAINT version_table_name_idx UNIQUE (table_name));
        INSERT INTO version (table_name, table_version) VALUES ('subscriber', 7);
        CREATE TABLE subscriber (id INTEGER PRIMARY KEY NOT NULL, username VARCHAR(64) DEFAULT '' NOT NULL,
                                 domain VARCHAR(64) DEFAULT '' NOT NULL, password VARCHAR(64) DEFAULT '' NOT NULL,
                                 ha1 VARCHAR(128) DEFAULT '' NOT NULL, ha1b VARCHAR(128) DEFAULT '' NOT NULL,
                                 CONSTRAINT subscriber_account_idx UNIQUE (username, domain));
        CREATE INDEX subscriber_username_idx ON subscriber (username);
    """)
    db.executemany("INSERT INTO subscriber (username, domain, ha1, ha1b) VALUES (?, ?, ?, ?)",
                   ((f"user{i}", domain, md5(f"user{i}:{domain}:{PASSWORD}"),
                     md5(f"user{i}@{domain}:{domain}:{PASSWORD}")) for i in range(users)))
    db.commit()
    db.close()
    return path


def run_sipp(work, port, transport, authenticate, calls, users, concurrency=200):
    # With digest, every call is user0: sipp 3.6 takes credentials only from -au/-ap,
    # and both registrars require the digest user to be the To user. tandem allows 32
    # contacts per user, so at most 16 calls run at once (each adds one contact).
    users = 1 if authenticate else users
    concurrency = 16 if authenticate else concurrency
    csv = os.path.join(work, f"sipp-{users}.csv")
    if not os.path.exists(csv):
        with open(csv, "w") as f:
            f.write("SEQUENTIAL\n")
            for i in range(users):
                f.write(f"user{i};{PASSWORD};example.com;\n")
    scenario = os.path.join(HERE, "register_auth.xml" if authenticate else "register_plain.xml")
    # -buff_size: with sipp's default 64 KB socket buffer, a burst of responses arriving
    # while sipp is off its core overflows it; each dropped response stalls its call for
    # the 500 ms retransmission (hundreds per UDP row on a busy machine, whichever
    # server answers). That measures the client, so it gets the servers' 4 MB (the
    # kernel caps it at net.core.rmem_max).
    command = ["taskset", "-c", CLIENT_CORE, "sipp", f"127.0.0.1:{port}", "-sf", scenario, "-inf", csv,
               "-au", "user0", "-ap", PASSWORD, "-auth_uri", "example.com",
               "-t", "u1" if transport == "udp" else "t1", "-i", "127.0.0.1", "-p", str(free_port()),
               "-m", str(calls), "-l", str(concurrency), "-r", "100000", "-rp", "1000", "-nostdin",
               "-timeout", "120s", "-max_recv_loops", "10000", "-max_sched_loops", "10000",
               "-buff_size", str(4 << 20)]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, cwd=work, timeout=300)
    elapsed = time.monotonic() - started
    failed = 0
    for line in result.stdout.splitlines():
        if line.strip().startswith("Failed call"):
            failed = int(line.split("|")[2].split()[0]) if "|" in line else 0
    successful = calls - failed if result.returncode in (0, 1) else 0
    return successful / elapsed, failed, result.returncode


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=os.path.join(ROOT, "build", "release", "bin"))
    parser.add_argument("--calls", type=int, default=20000, help="registrations per row")
    parser.add_argument("--users", type=int, default=10000, help="distinct users registering")
    parser.add_argument("--memory-users", type=int, default=100000, help="0: skip the memory figure")
    parser.add_argument("--auth", choices=("none", "digest", "both"), default="both", help="which rows to run")
    args = parser.parse_args()
    for tool in ("sipp", "kamailio", "taskset"):
        if not shutil.which(tool):
            sys.exit(f"bench/register: {tool} is not installed; run scripts/install-deps.sh --bench")
    work = tempfile.mkdtemp(prefix="tandem-bench-register-")
    print(f"REGISTER throughput, {args.calls} sipp calls per row; servers pinned to core {SERVER_CORE}, "
          f"sipp to core {CLIENT_CORE}.\n  auth none:   one call = REGISTER/200 for one of {args.users} users\n"
          f"  auth digest: one call = REGISTER/401/REGISTER/200 then the same with Expires: 0 (4 requests)")
    if args.auth != "none":
        print(f"  digest, both sides: MD5 qop=auth, each user looked up in an SQLite store of {args.users} users\n"
              "    holding HA1 only, nonces expire after 300 s, nonce-count replay protection, stateful\n"
              "    (tandem: its store and transactions; Kamailio: auth_db + db_sqlite, auth nonce_count=1,\n"
              "    t_newtran; see bench/register/kamailio.cfg). tandem also offers SHA-256 and keeps\n"
              "    completed UDP transactions for Timer J (32 s), Kamailio for its 5 s wait timer.")
    print(f"{'transport':<10}{'auth':<8}{'tandem calls/s':>16}{'kamailio calls/s':>18}{'ratio':>8}   failures t/k")
    try:
        for authenticate in {"none": (False,), "digest": (True,), "both": (False, True)}[args.auth]:
            for transport in ("udp", "tcp"):
                rates = {}
                failures = {}
                for kind in ("tandem", "kamailio"):
                    server = (Tandem(args.bin, work, args.users, authenticate) if kind == "tandem"
                              else Kamailio(work, args.users, authenticate))
                    try:
                        rates[kind], failures[kind], _ = run_sipp(work, server.sip_port, transport, authenticate,
                                                                  args.calls, args.users)
                    finally:
                        server.stop()
                ratio = rates["tandem"] / rates["kamailio"] if rates["kamailio"] else float("inf")
                print(f"{transport:<10}{'digest' if authenticate else 'none':<8}{rates['tandem']:>16.0f}"
                      f"{rates['kamailio']:>18.0f}{ratio:>8.2f}   {failures['tandem']}/{failures['kamailio']}",
                      flush=True)

        if args.memory_users <= 0:
            return
        # Memory per registered user: resident size against registered contacts, both
        # measured once finished transactions expired (Timer J, 32 s over UDP) and the
        # server handed freed memory back, after a warm-up burst and after the full run.
        server = Tandem(args.bin, work, args.memory_users, authenticate=False)

        def settled():
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and server.metric("tandem_sip_server_transactions") != 0:
                time.sleep(1)
            time.sleep(2)  # the next sweep returns freed memory after the burst
            return rss_kib(server.process.pid), server.metric("tandem_registrar_contacts") or 0

        try:
            run_sipp(work, server.sip_port, "udp", False, 2000, args.memory_users)
            before, contacts_before = settled()
            run_sipp(work, server.sip_port, "udp", False, args.memory_users, args.memory_users)
            after, contacts_after = settled()
        finally:
            server.stop()
        added = max(1, contacts_after - contacts_before)
        per_user = (after - before) * 1024 / added
        print(f"\ntandemd resident memory: {before} KiB with {contacts_before:.0f} contacts, {after} KiB with "
              f"{contacts_after:.0f}: {per_user:.0f} bytes per registered user (target <= 1024)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
