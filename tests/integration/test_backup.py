"""The Backup Service between two paired pools, driven through the tandem CLI and the
admin API of a real deployment (two pools of two servers, SQLite back-ends): both
directions reach SteadyState and verify consistent; a cut link shows in status and
catches up with nothing lost or duplicated; killing the shipping server mid-stream
loses nothing; forged and corrupted batches are refused and change nothing; and a
pool already holding 10,000 users is copied by an initial sync."""
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse

from tandem_harness import SOURCE_DIR, Deployment, http, topology_text, wait_until

POOL1, POOL2 = "pool1.example.com", "pool2.example.com"


def paired_pools(servers=2):
    return [
        {"fqdn": POOL1, "site": "siteA", "servers": [f"p1fe{i + 1}" for i in range(servers)], "backup_pool": POOL2},
        {"fqdn": POOL2, "site": "siteB", "servers": [f"p2fe{i + 1}" for i in range(servers)], "backup_pool": POOL1},
    ]


def import_users(d, users):
    """Provision (uri, pool) pairs with `tandem user import`."""
    path = os.path.join(d.dir, f"users-{len(users)}-{time.monotonic_ns()}.csv")
    with open(path, "w") as f:
        for uri, pool in users:
            f.write(f"{uri},{pool},secret\n")
    d.tandem("user", "import", path, check=True)


def rows(d, pool_db, sql, args=()):
    """Reads a pool's SQLite store directly (read-only): what really is in the copy."""
    db = sqlite3.connect(f"file:{os.path.join(d.data_dir, pool_db)}?mode=ro", uri=True, timeout=10)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def status(d, pool=POOL1):
    result = d.tandem("--json", "backup", "status", "--pool", pool, check=True)
    return json.loads(result.stdout)


def all_steady(answer):
    for direction in answer["directions"]:
        for module in direction["modules"]:
            if module["export_state"] != "SteadyState" or module["import_state"] != "NormalState":
                return False
            if module["applied_seq"] != module["source_seq"]:
                return False
    return True


class ContactWriter:
    """Adds contacts to one owner through the pool's servers, round robin, until
    stopped; remembers every write a server acknowledged (HTTP 200)."""

    def __init__(self, d, owner, servers, prefix):
        self.d, self.owner, self.servers, self.prefix = d, owner, list(servers), prefix
        self.acknowledged = []
        self.attempts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(30)

    def _run(self):
        path = "/users/contacts?user=" + urllib.parse.quote(self.owner)
        i = 0
        while not self._stop.is_set() and self.attempts < 20000:
            contact = f"sip:{self.prefix}{self.attempts}@example.com"
            self.attempts += 1
            server = self.servers[i % len(self.servers)]
            i += 1
            try:
                code, _ = self.d.admin(server, path, method="POST", body=json.dumps({"contact": contact}))
            except OSError:
                continue  # a dead server: nothing acknowledged
            if code == 200:
                self.acknowledged.append(contact)
            time.sleep(0.005)  # a steady stream, not a flood


class BackupTwoPoolsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Deployment(topology_text(paired_pools(), sync_interval=1))
        cls.d.up()
        users = [(f"sip:a{i}@example.com", POOL1) for i in range(10)] + \
                [(f"sip:b{i}@example.com", POOL2) for i in range(10)]
        import_users(cls.d, users)

    @classmethod
    def tearDownClass(cls):
        cls.d.close()

    def add_contact(self, server, owner, contact):
        code, body = self.d.admin(server, "/users/contacts?user=" + urllib.parse.quote(owner), method="POST",
                                  body=json.dumps({"contact": contact}))
        self.assertEqual(code, 200, body)

    def wait_steady(self, timeout=30):
        wait_until(lambda: all_steady(status(self.d)), timeout=timeout, what="both directions in SteadyState")

    def test_both_directions_reach_steady_state_and_verify_consistent(self):
        d = self.d
        self.add_contact("p1fe1", "sip:a0@example.com", "sip:b0@example.com")
        self.add_contact("p2fe2", "sip:b0@example.com", "sip:a0@example.com")
        code, body = d.admin("p1fe2", "/users/note?user=" + urllib.parse.quote("sip:a1@example.com"), method="PUT",
                             body=json.dumps({"note": "In meetings all day"}))
        self.assertEqual(code, 200, body)
        self.wait_steady()
        # The copies are really there, in the partner's own store.
        self.assertIn(("sip:b0@example.com",),
                      rows(d, "pool2.db", "SELECT contact FROM contacts WHERE owner = ?", ("sip:a0@example.com",)))
        self.assertIn(("sip:a0@example.com",),
                      rows(d, "pool1.db", "SELECT contact FROM contacts WHERE owner = ?", ("sip:b0@example.com",)))
        self.assertEqual(rows(d, "pool2.db", "SELECT COUNT(*) FROM users WHERE home_pool = ?", (POOL1,)), [(10,)])
        # The CMS goes from its master pool (pool1) to the standby only.
        answer = status(d)
        outbound = [m["module"] for m in answer["directions"][0]["modules"]]
        inbound = [m["module"] for m in answer["directions"][1]["modules"]]
        self.assertEqual(sorted(outbound), ["cms", "conference", "user"])
        self.assertEqual(sorted(inbound), ["conference", "user"])
        verified = d.tandem("backup", "verify", "--pool", POOL1)
        self.assertEqual(verified.returncode, 0, verified.stdout + verified.stderr)
        self.assertIn("consistent at sequence", verified.stdout)
        self.assertNotIn("DIFFERS", verified.stdout)

    def test_status_json_keys_are_the_contract(self):
        answer = status(self.d, POOL2)
        self.assertEqual(answer["pool"], POOL2)
        self.assertEqual(answer["paired_pool"], POOL1)
        self.assertEqual([(x["from"], x["to"]) for x in answer["directions"]], [(POOL2, POOL1), (POOL1, POOL2)])
        for direction in answer["directions"]:
            for module in direction["modules"]:
                for key in ("module", "export_state", "import_state", "source_seq", "applied_seq", "lag_seconds"):
                    self.assertIn(key, module)
        human = self.d.tandem("backup", "status", "--pool", POOL2, check=True).stdout
        self.assertIn(f"{POOL2} -> {POOL1}", human)

    def test_forged_and_corrupted_batches_are_refused_and_change_nothing(self):
        d = self.d
        self.wait_steady()
        before = rows(d, "pool2.db", "SELECT COUNT(*) FROM contacts")
        url = d.server("p2fe1")["admin_url"]
        params = {"source": POOL1, "module": "user", "sha256": "0" * 64}
        # No signature, a wrong one, and a pool that is not the partner.
        for extra in ({}, {"sig": "0" * 64}, {"source": "pool9.example.com", "sig": "0" * 64}):
            query = urllib.parse.urlencode({**params, **extra})
            code, body = http("POST", f"{url}/backup/apply?{query}", body=b"\x28\xb5\x2f\xfd garbage")
            self.assertIn(code, (401, 403), body)
        # Correctly signed (the test reads the pairing secret) but corrupted in transit.
        import hashlib
        import hmac
        with open(os.path.join(d.data_dir, f"pairing-{POOL1}+{POOL2}.secret")) as f:
            secret = f.read().strip()
        text = "/backup/apply" + "".join(f"\n{k}={v}" for k, v in sorted(params.items()))
        params["sig"] = hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()
        code, body = http("POST", f"{url}/backup/apply?{urllib.parse.urlencode(params)}",
                          body=b"\x28\xb5\x2f\xfd\x20\x05 definitely not what was signed")
        self.assertEqual(code, 400, body)
        self.assertEqual(rows(d, "pool2.db", "SELECT COUNT(*) FROM contacts"), before)
        # Reported: pool2 shows the import error until a good batch arrives.
        inbound = status(d, POOL2)["directions"][1]
        user = next(m for m in inbound["modules"] if m["module"] == "user")
        self.assertEqual(user["import_state"], "ErrorState")
        self.assertTrue(user.get("last_error"))
        metrics = d.admin("p2fe1", "/metrics")[1]
        self.assertRegex(metrics, r"tandem_backup_refused_requests_total [1-9]")
        self.add_contact("p1fe1", "sip:a5@example.com", "sip:b5@example.com")
        self.wait_steady()

    def test_cut_link_shows_in_status_then_catches_up_with_nothing_lost(self):
        d = self.d
        self.wait_steady()
        writer = ContactWriter(d, "sip:a2@example.com", ["p1fe1", "p1fe2"], "cut").start()
        wait_until(lambda: len(writer.acknowledged) >= 20, what="writes flowing")
        pool2_pids = [s["pid"] for s in d.state()["servers"] if s["pool"] == POOL2]
        for pid in pool2_pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            def degraded():
                module = next(m for m in status(d)["directions"][0]["modules"] if m["module"] == "user")
                return module["export_state"] in ("NonSteadyState", "ErrorState") and module.get("last_error")
            wait_until(degraded, timeout=40, what="pool1 -> pool2 reported as not steady, with a reason")
        finally:
            for pid in pool2_pids:
                os.kill(pid, signal.SIGCONT)
        wait_until(lambda: len(writer.acknowledged) >= 60, what="more writes")
        writer.stop()
        self.wait_steady(timeout=60)
        copied = {c for (c,) in rows(d, "pool2.db", "SELECT contact FROM contacts WHERE owner = ?",
                                     ("sip:a2@example.com",))}
        missing = [c for c in writer.acknowledged if c not in copied]
        self.assertEqual(missing, [], f"{len(missing)} acknowledged writes missing from the copy")
        source = {c for (c,) in rows(d, "pool1.db", "SELECT contact FROM contacts WHERE owner = ?",
                                     ("sip:a2@example.com",))}
        self.assertEqual(copied, source)
        verified = d.tandem("backup", "verify", "--pool", POOL1)
        self.assertEqual(verified.returncode, 0, verified.stdout + verified.stderr)

    def test_a_partner_that_lost_its_copy_gets_a_snapshot(self):
        d = self.d
        self.add_contact("p1fe1", "sip:a4@example.com", "sip:b4@example.com")
        self.wait_steady()
        # pool2's copy of pool1 is lost (say, its store restored from an old backup)
        # while its servers are frozen.
        pool2_pids = [s["pid"] for s in d.state()["servers"] if s["pool"] == POOL2]
        for pid in pool2_pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            db = sqlite3.connect(os.path.join(d.data_dir, "pool2.db"), timeout=10)
            with db:
                for table in ("users", "contacts", "presence_notes"):
                    db.execute(f"DELETE FROM {table} WHERE home_pool = ?", (POOL1,))
                db.execute("DELETE FROM import_progress WHERE source_pool = ?", (POOL1,))
            db.close()
        finally:
            for pid in pool2_pids:
                os.kill(pid, signal.SIGCONT)
        self.add_contact("p1fe2", "sip:a4@example.com", "sip:b6@example.com")
        self.wait_steady(timeout=40)
        self.assertEqual(rows(d, "pool2.db", "SELECT COUNT(*) FROM users WHERE home_pool = ?", (POOL1,)), [(10,)])
        self.assertEqual(
            sorted(rows(d, "pool2.db", "SELECT contact FROM contacts WHERE owner = ?", ("sip:a4@example.com",))),
            [("sip:b4@example.com",), ("sip:b6@example.com",)])
        verified = d.tandem("backup", "verify", "--pool", POOL1, "--module", "user")
        self.assertEqual(verified.returncode, 0, verified.stdout + verified.stderr)

    def test_killing_the_shipping_server_loses_nothing(self):
        d = self.d
        self.wait_steady()

        def holder():
            for server in ("p1fe1", "p1fe2"):
                answer = d.status(server)
                if answer and answer["backup"]["holds_lease"]:
                    return server
            return None

        shipping = wait_until(holder, what="a pool1 server holding the backup lease")
        survivor = "p1fe2" if shipping == "p1fe1" else "p1fe1"
        writer = ContactWriter(d, "sip:a3@example.com", [survivor], "kill").start()
        wait_until(lambda: len(writer.acknowledged) >= 30, what="writes flowing")
        os.kill(d.server(shipping)["pid"], signal.SIGKILL)
        wait_until(lambda: holder() == survivor, timeout=15, what="the surviving server taking the lease over")
        wait_until(lambda: len(writer.acknowledged) >= 80, what="more writes")
        writer.stop()

        def copied():
            return {c for (c,) in rows(d, "pool2.db", "SELECT contact FROM contacts WHERE owner = ?",
                                       ("sip:a3@example.com",))}
        wait_until(lambda: set(writer.acknowledged) <= copied(), timeout=30, what="every acknowledged write copied")
        head = rows(d, "pool1.db", "SELECT MAX(seq) FROM change_log WHERE module = 'user'")[0][0]
        applied = rows(d, "pool2.db", "SELECT applied_seq FROM import_progress "
                                      "WHERE source_pool = ? AND module = 'user'", (POOL1,))
        self.assertEqual(applied, [(head,)])


class PostgresPairTest(unittest.TestCase):
    """pool1 on a real PostgreSQL 15 primary, pool2 on SQLite: the same copy both ways."""

    def test_postgres_pool_and_sqlite_pool_copy_each_other(self):
        pg_dir = tempfile.mkdtemp(prefix="tandem-pg-")
        os.chmod(pg_dir, 0o755)  # the postgres user must reach it
        cluster = os.path.join(SOURCE_DIR, "scripts", "pg-cluster.sh")
        started = subprocess.run(["bash", cluster, "start", pg_dir], capture_output=True, text=True, timeout=180)
        if started.returncode == 3:
            self.skipTest("PostgreSQL 15 is not installed")
        self.addCleanup(shutil.rmtree, pg_dir, True)
        self.addCleanup(subprocess.run, ["bash", cluster, "stop", pg_dir], capture_output=True, timeout=120)
        self.assertEqual(started.returncode, 0, started.stdout + started.stderr)
        with open(os.path.join(pg_dir, "dsn")) as f:
            dsn = f.read().strip()
        pools = paired_pools(servers=1)
        pools[0]["backend"] = f'{{ type = "postgres", dsn = "{dsn}" }}'
        d = Deployment(topology_text(pools, sync_interval=1))
        self.addCleanup(d.close)
        d.up()
        import_users(d, [("sip:a0@example.com", POOL1), ("sip:b0@example.com", POOL2)])
        for server, owner, contact in (("p1fe1", "sip:a0@example.com", "sip:b0@example.com"),
                                       ("p2fe1", "sip:b0@example.com", "sip:a0@example.com")):
            code, body = d.admin(server, "/users/contacts?user=" + urllib.parse.quote(owner), method="POST",
                                 body=json.dumps({"contact": contact}))
            self.assertEqual(code, 200, body)
        wait_until(lambda: all_steady(status(d)), timeout=30, what="both directions in SteadyState")
        self.assertIn(("sip:b0@example.com",),
                      rows(d, "pool2.db", "SELECT contact FROM contacts WHERE owner = ?", ("sip:a0@example.com",)))
        verified = d.tandem("backup", "verify", "--pool", POOL2)
        self.assertEqual(verified.returncode, 0, verified.stdout + verified.stderr)
        self.assertEqual(verified.stdout.count("consistent at sequence"), 5, verified.stdout)


class InitialSyncTest(unittest.TestCase):
    def test_pool_already_holding_10000_users_is_copied_by_an_initial_sync(self):
        d = Deployment(topology_text(paired_pools(servers=1), sync_interval=1))
        self.addCleanup(d.close)
        d.up()
        d.tandem("service", "stop", "backup", "--pool", POOL1, check=True)
        refused = d.tandem("backup", "sync", "--pool", POOL1)
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("service start backup", refused.stderr)
        users = [f"sip:u{i}@example.com" for i in range(10000)]
        import_users(d, [(u, POOL1) for u in users])
        threads = []
        errors = []

        def add_contacts(part):
            for i in range(part, 10000, 4):
                code, body = d.admin("p1fe1", "/users/contacts?user=" + urllib.parse.quote(users[i]), method="POST",
                                     body=json.dumps({"contact": users[(i + 1) % 10000]}))
                if code != 200:
                    errors.append(body)
        for part in range(4):
            threads.append(threading.Thread(target=add_contacts, args=(part,)))
            threads[-1].start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(rows(d, "pool2.db", "SELECT COUNT(*) FROM users WHERE home_pool = ?", (POOL1,)), [(0,)])
        stopped = status(d)
        self.assertEqual(stopped["service"][POOL1], "stopped")

        started = time.monotonic()
        d.tandem("service", "start", "backup", "--pool", POOL1, check=True)
        synced = d.tandem("backup", "sync", "--pool", POOL1, "--timeout", "300")
        self.assertEqual(synced.returncode, 0, synced.stdout + synced.stderr)
        print(f"\ninitial sync of 10,000 users + 10,000 contacts: {time.monotonic() - started:.1f} s", flush=True)
        self.assertEqual(rows(d, "pool2.db", "SELECT COUNT(*) FROM users WHERE home_pool = ?", (POOL1,)), [(10000,)])
        self.assertEqual(rows(d, "pool2.db", "SELECT COUNT(*) FROM contacts WHERE home_pool = ?", (POOL1,)),
                         [(10000,)])
        with open(os.path.join(d.data_dir, "servers", "p1fe1", "tandemd.log")) as f:
            self.assertRegex(f.read(), r"initial sync of user to pool2.example.com done: \d+ rows")
        verified = d.tandem("backup", "verify", "--pool", POOL1, "--module", "user")
        self.assertEqual(verified.returncode, 0, verified.stdout + verified.stderr)


if __name__ == "__main__":
    unittest.main()
