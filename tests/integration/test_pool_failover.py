"""Pool failover and failback between two paired pools, driven through the tandem CLI
and the admin API of a real deployment: planned failover under continuous writes
loses no acknowledged write, the ordering rule and the other refusals change nothing,
failback carries the changes made during the failover home (verify consistent), and
a disaster failover reports what it may lose, accounts for it exactly, and fences the
pool when it returns."""
import json
import os
import signal
import sqlite3
import threading
import time
import unittest
import urllib.parse

from tandem_harness import Deployment, topology_text, wait_until

POOL1, POOL2 = "pool1.example.com", "pool2.example.com"


def paired_pools():
    return [{"fqdn": POOL1, "site": "siteA", "servers": ["p1fe1", "p1fe2"], "backup_pool": POOL2},
            {"fqdn": POOL2, "site": "siteB", "servers": ["p2fe1", "p2fe2"], "backup_pool": POOL1}]


def contacts_in(d, db, owner):
    conn = sqlite3.connect(f"file:{os.path.join(d.data_dir, db)}?mode=ro", uri=True, timeout=10)
    try:
        return {c for (c,) in conn.execute("SELECT contact FROM contacts WHERE owner = ?", (owner,))}
    finally:
        conn.close()


def add_contact(d, server, owner, contact):
    try:
        code, _ = d.admin(server, "/users/contacts?user=" + urllib.parse.quote(owner), method="POST",
                          body=json.dumps({"contact": contact}))
    except OSError:
        return False
    return code == 200


class Writer:
    """Adds contacts to `owner` through the given servers in turn until stopped;
    remembers the acknowledged ones (HTTP 200). Refusals during a switch are fine."""

    def __init__(self, d, owner, servers, prefix):
        self.d, self.owner, self.servers, self.prefix = d, owner, servers, prefix
        self.acknowledged, self.attempts = [], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set() and self.attempts < 20000:
            contact = f"sip:{self.prefix}{self.attempts}@example.com"
            server = self.servers[self.attempts % len(self.servers)]
            self.attempts += 1
            if add_contact(self.d, server, self.owner, contact):
                self.acknowledged.append(contact)
            time.sleep(0.005)

    def stop(self):
        self._stop.set()
        self._thread.join(30)


def cms_version(d, server):
    return d.status(server)["cms"]["version"]


class PoolFailoverTest(unittest.TestCase):
    def setUp(self):
        self.d = Deployment(topology_text(paired_pools(), sync_interval=1))
        self.addCleanup(self.d.close)
        self.d.up()
        path = os.path.join(self.d.dir, "users.csv")
        with open(path, "w") as f:
            for i in range(5):
                f.write(f"sip:a{i}@example.com,{POOL1},secret\nsip:b{i}@example.com,{POOL2},secret\n")
        self.d.tandem("user", "import", path, check=True)

    def assert_verified(self):
        """`tandem backup verify` reports pool1 and its copy consistent (the copy may
        still be catching up for a moment)."""
        d = self.d
        try:
            wait_until(lambda: d.tandem("backup", "verify", "--pool", POOL1).returncode == 0, timeout=30,
                       what="backup verify consistent after failback")
        except AssertionError:
            result = d.tandem("backup", "verify", "--pool", POOL1)
            self.fail(result.stdout + result.stderr)

    def refused(self, *args, expect):
        before = cms_version(self.d, "p2fe1")
        result = self.d.tandem(*args)
        self.assertNotEqual(result.returncode, 0, result.stdout)
        self.assertIn(expect, result.stderr)
        self.assertEqual(cms_version(self.d, "p2fe1"), before, "a refused command changed the CMS")

    def test_planned_failover_and_failback_lose_nothing_and_follow_the_ordering_rule(self):
        d = self.d
        self.refused("pool", "failback", "--pool", POOL1, expect="is not failed over")
        self.refused("pool", "failover", "--pool", "pool9.example.com", expect="not in the published topology")
        # Writes for a pool1 user, through servers of both pools, all along.
        writer = Writer(d, "sip:a0@example.com", ["p1fe1", "p2fe1", "p1fe2"], "w")
        wait_until(lambda: len(writer.acknowledged) >= 20, what="writes flowing")
        failover = d.tandem("pool", "failover", "--pool", POOL1)
        self.assertEqual(failover.returncode, 0, failover.stdout + failover.stderr + d.logs())
        self.assertIn("drained", failover.stdout)
        self.assertIn(f"Pool {POOL1} is failed over to {POOL2}", failover.stdout)
        at_failover = len(writer.acknowledged)
        wait_until(lambda: len(writer.acknowledged) >= at_failover + 20, what="writes served by pool2")
        # Nothing acknowledged before the switch is missing from pool2, which now serves.
        missing = set(writer.acknowledged[:at_failover]) - contacts_in(d, "pool2.db", "sip:a0@example.com")
        self.assertEqual(missing, set())
        # The ordering rule: pool2 serves pool1's users, so pool2 cannot be failed over.
        self.refused("pool", "failover", "--pool", POOL2, expect=f"fail {POOL1} back first")
        self.refused("pool", "failover", "--pool", POOL1, expect="already failed over")

        failback = d.tandem("pool", "failback", "--pool", POOL1)
        self.assertEqual(failback.returncode, 0, failback.stdout + failback.stderr + d.logs())
        at_failback = len(writer.acknowledged)
        wait_until(lambda: len(writer.acknowledged) >= at_failback + 10, what="writes served by pool1 again")
        writer.stop()
        # Everything acknowledged, before, during and after, is home; the copy agrees.
        home = contacts_in(d, "pool1.db", "sip:a0@example.com")
        self.assertEqual(set(writer.acknowledged) - home, set())
        self.assert_verified()

    def test_disaster_failover_accounts_for_what_it_loses_and_fences_the_returning_pool(self):
        d = self.d
        owner = "sip:a1@example.com"
        self.assertTrue(add_contact(d, "p1fe1", owner, "sip:shipped@example.com"))
        wait_until(lambda: "sip:shipped@example.com" in contacts_in(d, "pool2.db", owner), what="first write copied")
        # Writes pool1 acknowledges but never ships: its Backup Service is stopped.
        d.tandem("service", "stop", "backup", "--pool", POOL1, check=True)
        unshipped = [f"sip:unshipped{i}@example.com" for i in range(3)]
        for contact in unshipped:
            self.assertTrue(add_contact(d, "p1fe1", owner, contact))
        pool1_pids = [s["pid"] for s in d.state()["servers"] if s["pool"] == POOL1]
        for pid in pool1_pids:
            os.kill(pid, signal.SIGSTOP)  # the site is lost
        resumed = False
        try:
            # Through pool2's servers only (pool1's hang).
            p2 = ["--admin", d.server("p2fe1")["admin_url"], "--token-file", os.path.join(d.data_dir, "admin.token")]
            refused = d.tandem(*p2, "pool", "failover", "--pool", POOL1, "--disaster")
            self.assertNotEqual(refused.returncode, 0)
            self.assertIn("fail the CMS over", refused.stderr)
            cms = d.tandem(*p2, "cms", "failover", "--force")
            self.assertEqual(cms.returncode, 0, cms.stdout + cms.stderr)
            failover = d.tandem(*p2, "--json", "pool", "failover", "--pool", POOL1, "--disaster")
            self.assertEqual(failover.returncode, 0, failover.stdout + failover.stderr)
            report = json.loads(failover.stdout)
            self.assertTrue(report["disaster"])
            self.assertIn("user", report["applied_seq"])
            self.assertIn("user", report["lost_after_seconds"])
            # pool2 serves a1 with the data it had, and takes new writes for it.
            self.assertIn("sip:shipped@example.com", contacts_in(d, "pool2.db", owner))
            self.assertTrue(add_contact(d, "p2fe1", owner, "sip:during@example.com"))
            for pid in pool1_pids:
                os.kill(pid, signal.SIGCONT)
            resumed = True
        finally:
            if not resumed:
                for pid in pool1_pids:
                    os.kill(pid, signal.SIGCONT)
        # The returning pool is fenced: it learns the newer routing and serves a1 no more.
        serving_view = d.status("p2fe1")["cms"]
        wait_until(lambda: all((d.status(s) or {}).get("cms", {}).get("routing_epoch") == serving_view["routing_epoch"]
                               for s in ("p1fe1", "p1fe2")),
                   timeout=20, what="pool1's servers learning the new routing")
        self.assertTrue(add_contact(d, "p1fe1", owner, "sip:after@example.com"))  # forwarded to pool2
        self.assertNotIn("sip:after@example.com", contacts_in(d, "pool1.db", owner))
        wait_until(lambda: "sip:after@example.com" in contacts_in(d, "pool2.db", owner), what="served by pool2")
        # What pool1 accepted and never shipped is divergent, exactly those writes, and
        # never shipped over pool2's data even with its Backup Service started again.
        d.tandem("service", "start", "backup", "--pool", POOL1, check=True)

        def divergent():
            status = json.loads(d.tandem("--json", "backup", "status", "--pool", POOL1, check=True).stdout)
            user = next(m for m in status["directions"][0]["modules"] if m["module"] == "user")
            return user.get("divergent_records")
        wait_until(lambda: divergent() == len(unshipped), timeout=20, what="the unshipped writes shown as divergent")
        for contact in unshipped:
            self.assertNotIn(contact, contacts_in(d, "pool2.db", owner))

        # Failback: the divergent writes are set aside (exported, not merged), pool1's
        # rows become pool2's, and the change made during the failover comes home.
        failback = d.tandem("pool", "failback", "--pool", POOL1)
        self.assertEqual(failback.returncode, 0, failback.stdout + failback.stderr + d.logs())
        self.assertIn("set aside 3 divergent records", failback.stdout)
        exported = json.loads(d.tandem("backup", "divergent", "--pool", POOL1, check=True).stdout)
        self.assertEqual(sorted(json.loads(r["payload"])["contact"] for r in exported["divergent"]["user"]),
                         sorted(unshipped))
        home = contacts_in(d, "pool1.db", owner)
        self.assertIn("sip:during@example.com", home)
        self.assertIn("sip:after@example.com", home)
        self.assertEqual(home & set(unshipped), set(), "divergent rows were merged silently")
        for contact in unshipped:
            self.assertNotIn(contact, contacts_in(d, "pool2.db", owner))
        self.assert_verified()


if __name__ == "__main__":
    unittest.main()
