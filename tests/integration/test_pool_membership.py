"""Pool membership through leases in the pool's store: `tandem pool status` shows the
live servers and their routing groups; after kill -9 of one, its lease expires and
its groups, and only its groups, move to the survivors."""
import json
import os
import signal
import unittest

from tandem_harness import Deployment, topology_text, wait_until


class PoolMembershipTest(unittest.TestCase):
    def setUp(self):
        self.d = Deployment(topology_text([{"fqdn": "pool1.example.com", "site": "siteA",
                                            "servers": ["fe1", "fe2", "fe3"]}]))
        self.addCleanup(self.d.close)
        self.d.up()

    def pool_status(self):
        result = self.d.tandem("--json", "pool", "status")
        if result.returncode != 0:
            return None
        return json.loads(result.stdout)["pools"][0]

    def test_a_killed_servers_groups_move_to_the_survivors(self):
        def all_live():
            status = self.pool_status()
            return status if status and status["live_servers"] == 3 else None

        before = {s["id"]: s["groups"] for s in wait_until(all_live, what="three live servers")["servers"]}
        self.assertEqual(sum(before.values()), 256)
        os.kill(self.d.server("fe2")["pid"], signal.SIGKILL)

        def fe2_expired():
            status = self.pool_status()
            return status if status and status["live_servers"] == 2 else None

        after = {s["id"]: s for s in wait_until(fe2_expired, timeout=15, what="fe2's lease to expire")["servers"]}
        self.assertFalse(after["fe2"]["live"])
        self.assertEqual(after["fe1"]["groups"] + after["fe3"]["groups"], 256)
        # Survivors keep what they had and gain only what fe2 owned.
        self.assertGreaterEqual(after["fe1"]["groups"], before["fe1"])
        self.assertGreaterEqual(after["fe3"]["groups"], before["fe3"])


if __name__ == "__main__":
    unittest.main()
