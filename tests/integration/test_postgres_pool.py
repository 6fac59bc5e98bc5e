"""A pool whose back-end is a real PostgreSQL 15 primary with a synchronous standby
(scripts/pg-cluster.sh), driven through tandem up and the CLI: the CMS and the users
live there; `tandem backend status` reports the pair; `tandem backend failover` is
refused while the primary is up, for a pool without a standby and for a standby last
seen asynchronous; after a `kill -9` of the primary's postmaster in the middle of a
stream of writes it promotes the standby with every acknowledged write, and the
servers follow it without a restart."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import unittest
import urllib.parse

from tandem_harness import SOURCE_DIR, AcknowledgedWrites, Deployment, is_running, topology_text, wait_until

PG_CLUSTER = os.path.join(SOURCE_DIR, "scripts", "pg-cluster.sh")
PSQL = os.path.join(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"), "psql")
POOL1, POOL2 = "pool1.example.com", "pool2.example.com"
ALICE = "sip:alice@example.com"


def psql(dsn, sql):
    """The rows of `sql` run on `dsn`, one string per row."""
    result = subprocess.run([PSQL, "-qAt", "-d", dsn, "-c", sql], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise AssertionError(f"psql {sql!r} on {dsn} failed: {result.stderr}")
    return result.stdout.splitlines()


def postgres_backend(dsn, mirror=None):
    return f'{{ type = "postgres", dsn = "{dsn}"' + (f', mirror_dsn = "{mirror}"' if mirror else "") + " }"


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
            self.primary = f.read().strip()
        with open(os.path.join(self.pg_dir, "standby.dsn")) as f:
            self.standby = f.read().strip()

    def deploy(self, extra_pools=()):
        pools = [{"fqdn": POOL1, "site": "siteA", "servers": ["p1fe1", "p1fe2"],
                  "backend": postgres_backend(self.primary, self.standby)}] + list(extra_pools)
        d = Deployment(topology_text(pools))
        self.addCleanup(d.close)
        d.up()
        password = os.path.join(d.dir, "pw")
        with open(password, "w") as f:
            f.write("secret\n")
        d.tandem("user", "add", ALICE, "--pool", POOL1, "--password-file", password, check=True)
        return d

    def in_recovery(self, dsn):
        return psql(dsn, "SELECT pg_is_in_recovery()") == ["t"]

    def wait_observed(self, d, servers, sync_state):
        """Until each server says it last saw the primary report the standby as `sync_state`."""
        def observed(server):
            code, body = d.admin(server, "/backend/status?pool=" + POOL1)
            return code == 200 and json.loads(body)["pools"][0].get("last_observed", {}).get("sync_state")
        wait_until(lambda: all(observed(s) == sync_state for s in servers), timeout=20,
                   what=f"every server to see the standby as '{sync_state}'")

    def test_acknowledged_writes_survive_a_kill_of_the_primary_and_a_failover(self):
        d = self.deploy()
        # Both servers of the pool see the same store.
        for server in ("p1fe1", "p1fe2"):
            code, body = d.admin(server, "/users?pool=" + POOL1)
            self.assertEqual(code, 200, body)
            self.assertIn(ALICE, body)
        self.assertEqual(d.status("p1fe2")["cms"]["version"], 1)

        status = json.loads(d.tandem("--json", "backend", "status", "--pool", POOL1, check=True).stdout)["pools"][0]
        self.assertEqual([s["role"] for s in status["servers"]], ["primary", "standby"])
        self.assertTrue(status["synchronous"])

        # With the primary up, a failover would make two primaries: refused, nothing changes.
        refused = d.tandem("backend", "failover", "--pool", POOL1)
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("still reachable", refused.stderr)
        self.assertTrue(self.in_recovery(self.standby))
        self.assertFalse(self.in_recovery(self.primary))
        self.wait_observed(d, ["p1fe1", "p1fe2"], "sync")

        # A steady stream of contact-list writes, round robin over the pool's servers.
        servers = ["p1fe1", "p1fe2"]
        path = "/users/contacts?user=" + urllib.parse.quote(ALICE)
        writer = AcknowledgedWrites(lambda n: d.admin(servers[n % 2], path, method="POST", body=json.dumps(
            {"contact": f"sip:c{n}@example.com"}))[0] == 200)
        writer.start()
        self.addCleanup(writer.stop)
        wait_until(lambda: len(writer.acknowledged) >= 100, timeout=30, what="100 acknowledged writes")

        # Lose the primary as in a crash: kill -9 of its postmaster, and only of it.
        with open(os.path.join(self.pg_dir, "primary", "postmaster.pid")) as f:
            postmaster = int(f.readline())
        os.kill(postmaster, signal.SIGKILL)
        wait_until(lambda: not is_running(postmaster), timeout=10, what="the primary's postmaster to die")
        promoted = d.tandem("backend", "failover", "--pool", POOL1)
        self.assertEqual(promoted.returncode, 0, promoted.stdout + promoted.stderr)
        self.assertIn("Promoted", promoted.stdout)

        # The servers follow the promoted standby by themselves: writes are acknowledged again.
        at_failover = len(writer.acknowledged)
        wait_until(lambda: len(writer.acknowledged) >= at_failover + 100, timeout=30,
                   what="100 writes acknowledged through the promoted standby")
        writer.stop()
        stored = set(psql(self.standby, f"SELECT contact FROM contacts WHERE owner = '{ALICE}'"))
        missing = [n for n in writer.acknowledged if f"sip:c{n}@example.com" not in stored]
        self.assertEqual(missing, [], f"acknowledged writes lost ({len(writer.acknowledged)} acknowledged)")
        self.assertFalse(self.in_recovery(self.standby))
        roles = json.loads(d.tandem("--json", "backend", "status", "--pool", POOL1, check=True).stdout)
        self.assertEqual([s["role"] for s in roles["pools"][0]["servers"]], ["unreachable", "primary"])
        # No server was restarted.
        for server in servers:
            pid = d.server(server)["pid"]
            self.assertTrue(is_running(pid))
            self.assertEqual(d.status(server)["pid"], pid)

    def test_failover_refused_without_a_standby_or_with_a_standby_not_synchronous(self):
        psql(self.primary, "CREATE DATABASE pool2")
        lone = self.primary.replace("dbname=postgres", "dbname=pool2")
        d = self.deploy([{"fqdn": POOL2, "site": "siteA", "servers": ["p2fe1"], "backend": postgres_backend(lone)}])
        servers = ["p1fe1", "p1fe2", "p2fe1"]  # every server watches every pair

        refused = d.tandem("backend", "failover", "--pool", POOL2)
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("has no standby: add mirror_dsn", refused.stderr)

        # The standby turns asynchronous; once the servers saw it, losing the primary
        # must not lead to promoting a standby that may lack acknowledged writes.
        self.wait_observed(d, servers, "sync")
        psql(self.primary, "ALTER SYSTEM SET synchronous_standby_names = ''")
        psql(self.primary, "SELECT pg_reload_conf()")
        self.wait_observed(d, servers, "async")
        with open(os.path.join(d.data_dir, "servers", "p1fe1", "backend-sync.json")) as f:
            self.assertEqual(json.load(f)["pools"][POOL1]["sync_state"], "async", "kept for a restart")
        subprocess.run(["bash", PG_CLUSTER, "stop", self.pg_dir, "primary", "--immediate"], check=True,
                       capture_output=True, timeout=60)
        refused = d.tandem("backend", "failover", "--pool", POOL1)
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("'async', not synchronous", refused.stderr)
        self.assertIn("nothing was changed", refused.stderr)
        self.assertTrue(self.in_recovery(self.standby), "the standby was not promoted")


if __name__ == "__main__":
    unittest.main()
