"""A pool whose back-end is a real PostgreSQL 15 primary with a synchronous standby
(scripts/pg-cluster.sh), driven through tandem up and the CLI: the CMS and the users
live there; `tandem backend status` reports the pair; `tandem backend failover` is
refused while the primary is up, and after the primary is killed promotes the standby
with every acknowledged write, and the servers follow it without a restart."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

from tandem_harness import SOURCE_DIR, Deployment, topology_text, wait_until

PG_CLUSTER = os.path.join(SOURCE_DIR, "scripts", "pg-cluster.sh")


class PostgresPoolTest(unittest.TestCase):
    def setUp(self):
        self.pg_dir = tempfile.mkdtemp(prefix="tandem-pg-")
        os.chmod(self.pg_dir, 0o755)  # the postgres user must reach it
        started = subprocess.run(["bash", PG_CLUSTER, "start", self.pg_dir, "--standby"], capture_output=True,
                                 text=True, timeout=180)
        if started.returncode == 3:
            self.skipTest("PostgreSQL 15 is not installed")
        self.addCleanup(shutil.rmtree, self.pg_dir, True)
        self.addCleanup(subprocess.run, ["bash", PG_CLUSTER, "stop", self.pg_dir], capture_output=True, timeout=120)
        self.assertEqual(started.returncode, 0, started.stdout + started.stderr)
        with open(os.path.join(self.pg_dir, "dsn")) as f:
            dsn = f.read().strip()
        with open(os.path.join(self.pg_dir, "standby.dsn")) as f:
            mirror = f.read().strip()
        pools = [{"fqdn": "pool1.example.com", "site": "siteA", "servers": ["p1fe1", "p1fe2"],
                  "backend": f'{{ type = "postgres", dsn = "{dsn}", mirror_dsn = "{mirror}" }}'}]
        self.d = Deployment(topology_text(pools))
        self.addCleanup(self.d.close)
        self.d.up()

    def test_users_and_cms_live_in_postgres_and_survive_a_standby_promotion(self):
        d = self.d
        password = os.path.join(d.dir, "pw")
        with open(password, "w") as f:
            f.write("secret\n")
        d.tandem("user", "add", "sip:alice@example.com", "--pool", "pool1.example.com", "--password-file", password,
                 check=True)
        # Both servers of the pool see the same store.
        for server in ("p1fe1", "p1fe2"):
            code, body = d.admin(server, "/users?pool=pool1.example.com")
            self.assertEqual(code, 200, body)
            self.assertIn("sip:alice@example.com", body)
        self.assertEqual(d.status("p1fe2")["cms"]["version"], 1)

        status = json.loads(d.tandem("--json", "backend", "status", "--pool", "pool1.example.com",
                                     check=True).stdout)["pools"][0]
        self.assertEqual([s["role"] for s in status["servers"]], ["primary", "standby"])
        self.assertTrue(status["synchronous"])

        # With the primary up, a failover would make two primaries: refused, nothing changes.
        refused = d.tandem("backend", "failover", "--pool", "pool1.example.com")
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("still reachable", refused.stderr)
        self.assertEqual([s["role"] for s in json.loads(d.tandem(
            "--json", "backend", "status", check=True).stdout)["pools"][0]["servers"]], ["primary", "standby"])

        # Lose the primary; fail over to the synchronous standby; the servers follow it.
        subprocess.run(["bash", PG_CLUSTER, "stop", self.pg_dir, "primary", "--immediate"], check=True,
                       capture_output=True, timeout=60)
        promoted = d.tandem("backend", "failover", "--pool", "pool1.example.com")
        self.assertEqual(promoted.returncode, 0, promoted.stdout + promoted.stderr)
        self.assertIn("Promoted", promoted.stdout)
        def add_bob():
            # A try whose outcome was unknown (connection lost at COMMIT) may have added
            # bob: then the retry says so, which is success too.
            result = d.tandem("user", "add", "sip:bob@example.com", "--pool", "pool1.example.com",
                              "--password-file", password)
            return result.returncode == 0 or "already provisioned" in result.stderr

        wait_until(add_bob, timeout=30, what="a write through the promoted standby")
        listed = d.tandem("user", "list", check=True).stdout
        self.assertIn("sip:alice@example.com", listed, "the acknowledged user survived the failover")
        self.assertIn("sip:bob@example.com", listed)


if __name__ == "__main__":
    unittest.main()
