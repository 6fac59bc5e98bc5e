"""Real-client check of routing between pools: a sipp user agent signs in through a
server of the wrong pool, follows the 301 to the first Contact (sipp's setdest
action, the way a client that follows redirects does), answers the digest challenge
there and ends registered in the pool that serves it — and nowhere else.

baresip is not part of this check: its registration client (libre's sipreg) retries
on 401/407/423 only and treats a 3xx on REGISTER as a failure, so it must be pointed
at a server of its own pool."""
import json
import os
import unittest

from tandem_harness import Deployment, run_sipp, topology_text, wait_until

POOL1 = "pool1.example.com"
POOL2 = "pool2.example.com"


class RedirectToServingPoolTest(unittest.TestCase):
    def setUp(self):
        self.d = Deployment(topology_text([
            {"fqdn": POOL1, "site": "siteA", "servers": ["p1fe1", "p1fe2"], "backup_pool": POOL2},
            {"fqdn": POOL2, "site": "siteB", "servers": ["p2fe1"], "backup_pool": POOL1}],
            sip_extra='digest_algorithms = ["MD5"]', sync_interval=1))
        self.addCleanup(self.d.close)
        self.d.up()
        path = os.path.join(self.d.dir, "alice.pw")
        with open(path, "w") as f:
            f.write("alice-secret\n")
        self.d.tandem("user", "add", "sip:alice@example.com", "--pool", POOL1, "--password-file", path, check=True)

        def pool2_knows_alice():
            code, body = self.d.admin("p2fe1", f"/users?pool={POOL2}")
            return code == 200 and any(u["uri"] == "sip:alice@example.com" for u in json.loads(body)["users"])
        wait_until(pool2_knows_alice, what="the Backup Service to copy alice to pool2")

    def registered(self, server_id):
        return self.d.status(server_id)["sip"]["registered_users"]

    def test_sipp_follows_the_301_and_registers_with_the_serving_pool(self):
        port = int(self.d.server("p2fe1")["sip"].rsplit(":", 1)[1])
        code, diagnostics = run_sipp(port, "register_redirected.xml", [("alice", "alice-secret", "example.com")])
        self.assertEqual(code, 0, diagnostics + self.d.logs())
        self.assertEqual(self.registered("p2fe1"), 0, "nothing registered in the wrong pool")
        self.assertEqual(self.registered("p1fe1") + self.registered("p1fe2"), 1, "registered in pool1")


if __name__ == "__main__":
    unittest.main()
