"""Routing SIP requests between pools: any server of any pool accepts a request for
any user. A REGISTER for a user another pool serves is redirected (301, the serving
pool's servers as Contacts, no binding here) — even though the Backup Service put
that user in this pool's store; MESSAGE, SUBSCRIBE and PUBLISH are proxied to the
serving pool, so users of two pools message and watch each other normally."""
import json
import os
import re
import unittest

from tandem_harness import (Deployment, Sipp, register_request, run_sipp, sip_exchange, start_device, topology_text,
                            wait_until)

POOL1 = "pool1.example.com"
POOL2 = "pool2.example.com"
# alice and carol are homed in pool1, bob and dave in pool2.
USERS = {"alice": POOL1, "carol": POOL1, "bob": POOL2, "dave": POOL2}


def password(user):
    return f"{user}-secret"


def registered_users(d, server_ids):
    return sum(d.status(s)["sip"]["registered_users"] for s in server_ids)


class PoolRoutingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Deployment(topology_text([
            {"fqdn": POOL1, "site": "siteA", "servers": ["p1fe1", "p1fe2"], "backup_pool": POOL2},
            {"fqdn": POOL2, "site": "siteB", "servers": ["p2fe1", "p2fe2"], "backup_pool": POOL1}],
            sip_extra='digest_algorithms = ["MD5"]', sync_interval=1))
        try:
            cls.d.up()
            for user, pool in USERS.items():
                path = os.path.join(cls.d.dir, f"{user}.pw")
                with open(path, "w") as f:
                    f.write(password(user) + "\n")
                cls.d.tandem("user", "add", f"sip:{user}@example.com", "--pool", pool, "--password-file", path,
                             check=True)
            # The Backup Service copies each pool's users to its partner: then both pools
            # know every user (which is what makes a pool2 server route for alice).
            for server, partner in (("p1fe1", POOL1), ("p2fe1", POOL2)):
                wait_until(lambda: len(cls.users_in_store(server, partner)) == len(USERS),
                           what=f"{server}'s store to hold every user")
            # Routing groups settle once every server of a pool sees the others live: a
            # device registered before that may land on an owner about to lose its group.
            def live(server_id):
                code, body = cls.d.admin(server_id, "/pool/status?local=1")
                return json.loads(body).get("live_servers") if code == 200 else None
            wait_until(lambda: all(live(s) == 2 for s in ("p1fe1", "p1fe2", "p2fe1", "p2fe2")),
                       what="every server seeing its pool's two servers live")
        except Exception:
            cls.d.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.d.close()

    @classmethod
    def users_in_store(cls, server_id, pool):
        code, body = cls.d.admin(server_id, f"/users?pool={pool}")
        return {u["uri"] for u in json.loads(body)["users"]} if code == 200 else set()

    def start_device(self, user, server_id):
        return start_device(self, self.d, user, password(user), server_id)

    def assert_delivered(self, sender, recipient, via, device_server):
        """`recipient`'s device registered through `device_server` gets `sender`'s MESSAGE sent to `via`."""
        device = self.start_device(recipient, device_server)
        code, diagnostics = run_sipp(self.d.sip_port(via), "message.xml", [(sender, recipient, "example.com")],
                                     variables={"expect": 200})
        self.assertEqual(code, 0, diagnostics + self.d.logs())
        code, diagnostics = device.wait(timeout=10)
        self.assertEqual(code, 0, f"{recipient}'s device must receive {sender}'s MESSAGE:\n" + diagnostics)

    def test_register_through_the_wrong_pool_is_redirected_to_the_serving_pools_servers(self):
        d = self.d
        before = registered_users(d, ["p2fe1", "p2fe2"])
        response = sip_exchange(d.sip_port("p2fe1"), register_request("carol"))
        self.assertTrue(response.startswith("SIP/2.0 301 "), response)
        contacts = re.findall(r"^Contact: *(.*?)\r$", response, re.M)
        expected = [f"<sip:carol@127.0.0.1:{d.sip_port(s)};transport=udp>" for s in ("p1fe1", "p1fe2")]
        self.assertEqual(contacts, expected, response)
        self.assertEqual(registered_users(d, ["p2fe1", "p2fe2"]), before, "no binding in the wrong pool")
        # The pool serving her challenges as usual (no redirect there), and a user of
        # no pool is still unknown (challenged, like any user: names cannot be probed).
        self.assertTrue(sip_exchange(d.sip_port("p1fe2"), register_request("carol")).startswith("SIP/2.0 401 "))
        self.assertTrue(sip_exchange(d.sip_port("p2fe1"), register_request("nobody")).startswith("SIP/2.0 401 "))

    def test_message_between_users_of_two_pools(self):
        d = self.d
        # alice's client uses her own pool: p1fe1 proxies to pool2, which delivers; and
        # back: a MESSAGE for pool1's alice sent to a pool2 server.
        self.assert_delivered("alice", "bob", via="p1fe1", device_server="p2fe2")
        self.assert_delivered("bob", "alice", via="p2fe1", device_server="p1fe2")
        routed = sum(self.d.metric(s, "tandem_sip_pool_routed_total") for s in ("p1fe1", "p2fe1"))
        self.assertGreaterEqual(routed, 2)
        # Unknown users are still 404, wherever the MESSAGE arrives.
        code, diagnostics = run_sipp(d.sip_port("p2fe1"), "message.xml", [("bob", "nobody", "example.com")],
                                     variables={"expect": 404})
        self.assertEqual(code, 0, diagnostics)

    def test_a_pool2_watcher_sees_a_pool1_presentity(self):
        d = self.d
        d.tandem("user", "contacts", "add", "sip:carol@example.com", "sip:dave@example.com", check=True)
        d.tandem("user", "note", "set", "sip:carol@example.com", "back at 3", check=True)
        # dave (pool2) subscribes through his pool: the SUBSCRIBE is proxied to pool1
        # (record-routed), the NOTIFYs come from carol's server there.
        dave = Sipp(d.sip_port("p2fe1"), "subscribe_then_open_any_order.xml", [("dave", "carol", "example.com")])
        self.addCleanup(dave.stop)
        wait_until(lambda: sum(d.status(s)["sip"]["presence"]["subscriptions"] for s in ("p1fe1", "p1fe2")) >= 1,
                   what="the subscription held in pool1")
        self.assertEqual(sum(d.status(s)["sip"]["presence"]["subscriptions"] for s in ("p2fe1", "p2fe2")), 0)
        # carol publishes through a pool2 server too: proxied to pool1 as well.
        code, diagnostics = run_sipp(d.sip_port("p2fe2"), "publish_open.xml", [("carol", "-", "example.com")])
        self.assertEqual(code, 0, diagnostics + d.logs())
        code, diagnostics = dave.wait(timeout=20)
        self.assertEqual(code, 0, "dave must see carol's note, then carol open:\n" + diagnostics + d.logs())



if __name__ == "__main__":
    unittest.main()
