"""CMS failover between the master pool and its standby (the master's backup pool),
driven through `tandem cms failover` on a real two-site deployment (two pools of three
servers, SQLite back-ends): a planned failover moves the master with nothing lost and
every server following the new master and epoch; a forced failover promotes the
standby while the master's servers are frozen (SIGSTOP), and the stale master steps
down when it comes back, keeping the versions the new master never got apart as
divergent. Refusals change nothing."""
import json
import os
import signal
import sqlite3
import unittest

from tandem_harness import Deployment, http, run_tandem, topology_text, two_site_pools, wait_until

POOL1, POOL2 = "pool1.example.com", "pool2.example.com"
POOL1_SERVERS = ("p1fe1", "p1fe2", "p1fe3")
POOL2_SERVERS = ("p2fe1", "p2fe2", "p2fe3")


def store_versions(d, pool_db):
    """{version: (master_pool, master_epoch)} of a pool's SQLite store, read directly."""
    db = sqlite3.connect(f"file:{os.path.join(d.data_dir, pool_db)}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute("SELECT version, document FROM cms_versions").fetchall()
    finally:
        db.close()
    out = {}
    for version, document in rows:
        parsed = json.loads(document)
        out[version] = (parsed.get("master_pool", ""), parsed.get("master_epoch", 1))
    return out


def store_setting(d, pool_db, key):
    db = sqlite3.connect(f"file:{os.path.join(d.data_dir, pool_db)}?mode=ro", uri=True, timeout=10)
    try:
        row = db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    finally:
        db.close()
    return row[0] if row else None


def cms_views(d, servers):
    """{server: (version, master_pool, master_epoch)} from each server's /status."""
    views = {}
    for server_id in servers:
        status = d.status(server_id)
        if status is None:
            return None
        cms = status["cms"]
        views[server_id] = (cms["version"], cms["master_pool"], cms["master_epoch"])
    return views


def all_see(d, servers, version, master, epoch):
    views = cms_views(d, servers)
    return views is not None and set(views.values()) == {(version, master, epoch)}


def publish_body(d, marker):
    with open(d.topology_path) as f:
        return json.dumps({"file": f"{marker}.toml", "toml": f.read() + f"\n# {marker}\n"})


class CmsFailoverTest(unittest.TestCase):
    def setUp(self):
        self.d = Deployment(topology_text(two_site_pools()))
        self.addCleanup(self.d.close)
        self.d.up()
        d = self.d
        wait_until(lambda: all_see(d, POOL1_SERVERS + POOL2_SERVERS, 1, POOL1, 1), what="every server at version 1")
        # The Backup Service copied version 1 to the standby.
        wait_until(lambda: 1 in store_versions(d, "pool2.db"), what="version 1 in pool2's store")

    def publish_via(self, server_id, marker, expected_version, lands_in=None):
        """Publishes through one server's admin API; checks the version, and that it
        landed in `lands_in`'s store (a pool db) under the master pool2 epoch 2."""
        code, answer = self.d.admin(server_id, "/cms/publish", "POST", publish_body(self.d, marker))
        self.assertEqual(code, 200, answer)
        self.assertEqual(json.loads(answer)["version"], expected_version)
        if lands_in:
            self.assertEqual(store_versions(self.d, lands_in)[expected_version], (POOL2, 2))

    def remote(self, server_id, *args):
        """The CLI pointed at one server (as an admin does when a pool's servers hang)."""
        return run_tandem(["--admin", self.d.server(server_id)["admin_url"], "--token-file",
                           os.path.join(self.d.data_dir, "admin.token")] + list(args))

    def test_planned_failover_moves_the_master_and_publishing_follows_it(self):
        d = self.d
        # Refused while the master is reachable: --force would make two masters.
        refused = d.tandem("cms", "failover", "--force")
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("reachable", refused.stderr)
        self.assertTrue(all_see(d, POOL1_SERVERS + POOL2_SERVERS, 1, POOL1, 1), "a refusal must change nothing")
        self.assertIn(store_setting(d, "pool1.db", "cms.read_only"), (None, ""))

        self.publish_via("p2fe2", "v2", 2)

        result = d.tandem("--json", "cms", "failover", "--timeout", "30")
        self.assertEqual(result.returncode, 0, result.stderr + d.logs())
        report = json.loads(result.stdout)
        self.assertEqual(report["mode"], "planned")
        self.assertEqual(report["new_master"], POOL2)
        self.assertEqual(report["promoted"]["version"], 3)
        self.assertEqual(report["promoted"]["master_epoch"], 2)
        self.assertEqual(report["promoted_from"]["version"], 2)
        self.assertEqual([s["step"].split(" ")[0] for s in report["steps"]],
                         ["checked:", POOL1, "final", "promoted", "pushed"])
        for step in report["steps"]:
            self.assertGreaterEqual(step["seconds"], 0)
        # Nothing lost: the standby held the master's head (2) before promoting 3.
        self.assertEqual(store_versions(d, "pool2.db")[3], (POOL2, 2))
        self.assertEqual(store_setting(d, "pool1.db", "cms.read_only"), POOL2)

        wait_until(lambda: all_see(d, POOL1_SERVERS + POOL2_SERVERS, 3, POOL2, 2),
                   what="every server on the new master and epoch")
        status = json.loads(d.tandem("--json", "cms", "status", check=True).stdout)
        self.assertEqual((status["master_pool"], status["master_epoch"], status["standby_pool"]), (POOL2, 2, POOL1))
        self.assertTrue(status["master_reachable"])
        self.assertEqual(status["divergent"], [])
        human = d.tandem("cms", "status", check=True).stdout
        self.assertIn(f"CMS master pool {POOL2} (epoch 2)", human)

        # Publishing through an old-master server is forwarded to the new master...
        self.publish_via("p1fe1", "v4", 4, lands_in="pool2.db")
        # ...the CLI works as before...
        with open(os.path.join(d.dir, "v5.toml"), "w") as f:
            f.write(json.loads(publish_body(d, "v5"))["toml"])
        published = d.tandem("topology", "publish", os.path.join(d.dir, "v5.toml"))
        self.assertEqual(published.returncode, 0, published.stderr)
        self.assertIn("CMS version 5", published.stdout)
        # ...and the old master never publishes locally any more.
        code, answer = d.admin("p1fe2", "/cms/publish?forwarded=1", "POST", publish_body(d, "local"))
        self.assertEqual(code, 409, answer)
        self.assertIn("not in the CMS master pool", answer)
        wait_until(lambda: all_see(d, POOL1_SERVERS + POOL2_SERVERS, 5, POOL2, 2), what="every server at version 5")

        # The old master is the standby now: the Backup Service ships the new master's
        # versions to it.
        wait_until(lambda: store_versions(d, "pool1.db").get(5) == (POOL2, 2), what="version 5 copied to pool1")
        self.assertEqual(store_versions(d, "pool1.db")[3], (POOL2, 2))

        # Failing over again while the new master is reachable needs no --force: refused with it.
        refused = d.tandem("cms", "failover", "--force")
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn(f"{POOL2} is reachable", refused.stderr)
        self.assertTrue(all_see(d, POOL1_SERVERS + POOL2_SERVERS, 5, POOL2, 2))

    def test_forced_failover_then_the_stale_master_steps_down_and_keeps_its_divergent_version(self):
        d = self.d
        # pool1 stops shipping, then publishes version 2: the standby never gets it.
        d.tandem("service", "stop", "backup", "--pool", POOL1, check=True)
        code, answer = d.admin("p1fe1", "/cms/publish", "POST", publish_body(d, "lost"))
        self.assertEqual((code, json.loads(answer).get("version")), (200, 2), answer)
        # Replicas pull from the master (they are not the Backup Service): every
        # server serves version 2, but pool2's store holds version 1 only.
        wait_until(lambda: all_see(d, POOL1_SERVERS + POOL2_SERVERS, 2, POOL1, 1), what="every server at version 2")
        self.assertEqual(sorted(store_versions(d, "pool2.db")), [1])

        pids = [d.server(s)["pid"] for s in POOL1_SERVERS]
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        resumed = []

        def resume():
            for pid in pids:
                if pid not in resumed:
                    os.kill(pid, signal.SIGCONT)
                    resumed.append(pid)
        self.addCleanup(resume)

        # Without --force the admin is told to use it; nothing changes.
        refused = self.remote("p2fe1", "cms", "failover")
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("--force", refused.stderr)
        self.assertTrue(all_see(d, POOL2_SERVERS, 2, POOL1, 1), "a refusal must change nothing")
        self.assertEqual(sorted(store_versions(d, "pool2.db")), [1])

        result = self.remote("p2fe1", "cms", "failover", "--force")
        self.assertEqual(result.returncode, 0, result.stderr + d.logs())
        self.assertIn("Promoted from version 1 (epoch 1)", result.stdout)
        self.assertIn("are not included", result.stdout)
        self.assertEqual(store_versions(d, "pool2.db")[2], (POOL2, 2))
        wait_until(lambda: all_see(d, POOL2_SERVERS, 2, POOL2, 2), what="pool2's servers on the new master")

        # The new master takes publishes while the old one is frozen.
        self.publish_via("p2fe3", "v3", 3, lands_in="pool2.db")

        # pool1 comes back: it learns the higher epoch and steps down.
        resume()
        wait_until(lambda: all_see(d, POOL1_SERVERS + POOL2_SERVERS, 3, POOL2, 2), timeout=30,
                   what="pool1's servers to step down")
        status = d.status("p1fe2")["cms"]
        self.assertFalse(status["is_master_pool"])
        divergent = status["divergent_versions"]
        self.assertEqual([(v["version"], v["master_epoch"], v["superseded_by_epoch"]) for v in divergent], [(2, 1, 2)])
        # Never merged: pool1's store ends with the new master's history, its own
        # version 2 kept apart (whole) in the setting.
        wait_until(lambda: store_versions(d, "pool1.db").get(3) == (POOL2, 2), timeout=30,
                   what="the new master's versions copied to pool1")
        self.assertEqual(store_versions(d, "pool1.db")[2], (POOL2, 2))
        kept = json.loads(store_setting(d, "pool1.db", "cms.divergent_versions"))
        self.assertIn("# lost", json.loads(kept[0]["document"])["topology_toml"])

        cluster = json.loads(d.tandem("--json", "cms", "status", check=True).stdout)
        self.assertEqual((cluster["master_pool"], cluster["master_epoch"]), (POOL2, 2))
        self.assertEqual([(p["pool"], [v["version"] for v in p["versions"]]) for p in cluster["divergent"]],
                         [(POOL1, [2])])
        human = d.tandem("cms", "status", check=True).stdout
        self.assertIn(f"DIVERGENT versions kept apart in pool {POOL1}", human)

        # The stepped-down pool forwards publishes to the new master.
        self.publish_via("p1fe3", "v4", 4, lands_in="pool2.db")


class CmsFailoverRefusalTest(unittest.TestCase):
    def test_failover_without_a_standby_is_refused(self):
        pools = two_site_pools()
        for pool in pools:
            pool.pop("backup_pool")
            pool["servers"] = pool["servers"][:1]
        d = Deployment(topology_text(pools))
        self.addCleanup(d.close)
        d.up()
        wait_until(lambda: all_see(d, ("p1fe1", "p2fe1"), 1, POOL1, 1), what="version 1")
        for args in (("cms", "failover"), ("cms", "failover", "--force")):
            refused = d.tandem(*args)
            self.assertNotEqual(refused.returncode, 0)
            self.assertIn("no backup pool", refused.stderr)
        self.assertTrue(all_see(d, ("p1fe1", "p2fe1"), 1, POOL1, 1))


if __name__ == "__main__":
    unittest.main()
