"""Resiliency mode: when pool2 cannot reach its paired pool1 for the failure detection
interval (and nobody failed pool1 over), pool2 accepts pool1's users with limited
function — registration, IM and presence — and refuses persistent changes for them
with the reason. Once pool1 has been reachable again for the failback interval, pool2
sends them home: their registrations there are dropped and their next REGISTER is
redirected to pool1. Short timers from the topology; pool1 is made unreachable by
stopping its server (SIGSTOP), and comes back with SIGCONT."""
import json
import os
import signal
import time
import unittest
import urllib.parse

from tandem_harness import (Deployment, Sipp, register_request, run_sipp, sip_exchange, start_device, topology_text,
                            wait_until)

POOL1 = "pool1.example.com"
POOL2 = "pool2.example.com"
USERS = {"alice": POOL1, "bob": POOL2}
DETECTION_SECONDS = 2
FAILBACK_SECONDS = 3
POOL2_SERVERS = ("p2fe1", "p2fe2")


def password(user):
    return f"{user}-secret"


class ResiliencyModeTest(unittest.TestCase):
    def setUp(self):
        self.d = Deployment(topology_text(
            [{"fqdn": POOL1, "site": "siteA", "servers": ["p1fe1"], "backup_pool": POOL2},
             {"fqdn": POOL2, "site": "siteB", "servers": list(POOL2_SERVERS), "backup_pool": POOL1}],
            sip_extra='digest_algorithms = ["MD5"]', sync_interval=1,
            extra=f"\n[resiliency]\nfailure_detection_seconds = {DETECTION_SECONDS}\n"
                  f"failback_seconds = {FAILBACK_SECONDS}\n"))
        self.addCleanup(self.d.close)
        d = self.d
        d.up()
        for user, pool in USERS.items():
            path = os.path.join(d.dir, f"{user}.pw")
            with open(path, "w") as f:
                f.write(password(user) + "\n")
            d.tandem("user", "add", f"sip:{user}@example.com", "--pool", pool, "--password-file", path, check=True)
        # alice lets bob see her presence; the Backup Service copies her, and that, to pool2.
        d.tandem("user", "contacts", "add", "sip:alice@example.com", "sip:bob@example.com", check=True)
        d.tandem("user", "note", "set", "sip:alice@example.com", "back at 3", check=True)
        d.tandem("backup", "sync", "--pool", POOL1, check=True)
        wait_until(lambda: self.contacts_of("alice", via="p2fe1") == {"sip:bob@example.com"},
                   what="alice's contact list copied to pool2")
        wait_until(lambda: all(self.live_servers(s) == 2 for s in POOL2_SERVERS),
                   what="pool2's servers seeing each other live")
        self.pool1_pid = d.server("p1fe1")["pid"]

    def live_servers(self, server_id):
        code, body = self.d.admin(server_id, "/pool/status?local=1")
        return json.loads(body).get("live_servers") if code == 200 else None

    def contacts_of(self, user, via):
        code, body = self.d.admin(via, "/users/contacts?user=" + urllib.parse.quote(f"sip:{user}@example.com"))
        return {c["contact"] for c in json.loads(body)["contacts"]} if code == 200 else None

    def modes(self):
        return {s: self.d.status(s)["resiliency"]["mode"] for s in POOL2_SERVERS}

    def stop_pool1(self):
        os.kill(self.pool1_pid, signal.SIGSTOP)
        self.addCleanup(lambda: os.kill(self.pool1_pid, signal.SIGCONT))

    def start_device(self, user, server_id):
        return start_device(self, self.d, user, password(user), server_id)

    def send_message(self, sender, recipient, via, expect=200):
        code, diagnostics = run_sipp(self.d.sip_port(via), "message.xml", [(sender, recipient, "example.com")],
                                     variables={"expect": expect})
        self.assertEqual(code, 0, diagnostics + self.d.logs())

    def test_pool2_serves_pool1s_users_with_limited_function_while_pool1_is_unreachable(self):
        d = self.d
        status = d.status("p2fe1")["resiliency"]
        self.assertEqual((status["partner"], status["mode"], status["failure_detection_seconds"],
                          status["failback_seconds"]), (POOL1, "normal", DETECTION_SECONDS, FAILBACK_SECONDS))
        wait_until(lambda: d.status("p2fe1")["resiliency"]["partner_reachable"] is True, what="pool1 reachable")
        self.assertTrue(sip_exchange(d.sip_port("p2fe1"), register_request("alice")).startswith("SIP/2.0 301 "),
                        "pool1 is reachable: its users are sent there")

        stopped_at = time.monotonic()
        self.stop_pool1()
        wait_until(lambda: self.modes() == {s: "resiliency" for s in POOL2_SERVERS}, timeout=30,
                   what="pool2's servers in resiliency mode")
        self.assertGreaterEqual(time.monotonic() - stopped_at, DETECTION_SECONDS,
                                "not before pool1 was unreachable for the whole detection interval")
        # The admin sees it (asking a pool2 server: pool1's does not answer).
        shown = d.tandem("--admin", d.server("p2fe1")["admin_url"], "--token-file",
                         os.path.join(d.data_dir, "admin.token"), "pool", "status", check=True)
        self.assertRegex(shown.stdout, r"RESILIENCY MODE on p2fe1, p2fe2: pool pool1.example.com is unreachable")

        # Registration and IM, both ways, with bob (pool2); the devices register through
        # either pool2 server (the pool's routing groups decide who holds the binding).
        bob = self.start_device("bob", "p2fe2")
        alice = self.start_device("alice", "p2fe1")
        self.send_message("alice", "bob", via="p2fe1")
        self.assertEqual(bob.wait(timeout=10)[0], 0, "bob must get alice's MESSAGE" + d.logs())
        self.send_message("bob", "alice", via="p2fe2")
        self.assertEqual(alice.wait(timeout=10)[0], 0, "alice must get bob's MESSAGE" + d.logs())

        # Presence: bob watches alice (her contact list allows it, from pool2's copy).
        watcher = Sipp(d.sip_port("p2fe2"), "subscribe_then_open_any_order.xml", [("bob", "alice", "example.com")])
        self.addCleanup(watcher.stop)
        wait_until(lambda: sum(d.status(s)["sip"]["presence"]["subscriptions"] for s in POOL2_SERVERS) >= 1,
                   what="bob's subscription to alice held in pool2")
        code, diagnostics = run_sipp(d.sip_port("p2fe1"), "publish_open.xml", [("alice", "-", "example.com")])
        self.assertEqual(code, 0, diagnostics + d.logs())
        code, diagnostics = watcher.wait(timeout=20)
        self.assertEqual(code, 0, "bob must see alice open:\n" + diagnostics + d.logs())

        # Persistent changes are refused with the reason, and change nothing; reads work.
        code, body = d.admin("p2fe1", "/users/contacts?user=" + urllib.parse.quote("sip:alice@example.com"),
                             method="POST", body=json.dumps({"contact": "sip:carol@example.com"}))
        self.assertEqual(code, 503, body)
        self.assertIn("resiliency mode", json.loads(body)["error"])
        self.assertIn("tandem pool failover --pool pool1.example.com --disaster", json.loads(body)["error"])
        self.assertEqual(self.contacts_of("alice", via="p2fe2"), {"sip:bob@example.com"})

        # pool1 comes back: after the failback interval pool2 sends alice home.
        os.kill(self.pool1_pid, signal.SIGCONT)
        back_at = time.monotonic()
        wait_until(lambda: self.modes() == {s: "normal" for s in POOL2_SERVERS}, timeout=30,
                   what="pool2's servers back to normal")
        self.assertGreaterEqual(time.monotonic() - back_at, FAILBACK_SECONDS,
                                "not before pool1 was reachable for the whole failback interval")
        # Only bob's registration is left in pool2; alice's next REGISTER goes to pool1.
        wait_until(lambda: sum(d.status(s)["sip"]["registered_users"] for s in POOL2_SERVERS) == 1,
                   what="alice's registration dropped from pool2")
        response = sip_exchange(d.sip_port("p2fe1"), register_request("alice"))
        self.assertTrue(response.startswith("SIP/2.0 301 "), response)
        self.assertIn(f"127.0.0.1:{d.sip_port('p1fe1')}", response)
        self.start_device("alice", "p1fe1")  # and pool1 serves her again
        self.assertEqual(d.status("p1fe1")["sip"]["registered_users"], 1)
        for server in POOL2_SERVERS:
            self.assertEqual(d.metric(server, "tandem_resiliency_transitions_total"), 2, f"{server}: one start, one end")

    def test_a_failover_supersedes_resiliency_mode(self):
        d = self.d
        os.kill(self.pool1_pid, signal.SIGKILL)  # lost for good: the admin fails it over
        wait_until(lambda: self.modes() == {s: "resiliency" for s in POOL2_SERVERS}, timeout=30,
                   what="pool2's servers in resiliency mode")
        # The CMS master is pool1, stopped: fail the CMS over first, then pool1 (disaster).
        d.tandem("cms", "failover", "--force", check=True)
        d.tandem("pool", "failover", "--pool", POOL1, "--disaster", check=True)
        wait_until(lambda: self.modes() == {s: "normal" for s in POOL2_SERVERS}, timeout=30,
                   what="resiliency mode ended by the failover")
        # pool2 now serves alice with full function: persistent changes are accepted.
        code, body = d.admin("p2fe1", "/users/contacts?user=" + urllib.parse.quote("sip:alice@example.com"),
                             method="POST", body=json.dumps({"contact": "sip:carol@example.com"}))
        self.assertEqual(code, 200, body)
        self.start_device("alice", "p2fe2")


if __name__ == "__main__":
    unittest.main()
