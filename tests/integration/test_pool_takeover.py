"""Server pooling: any server of a pool answers for every user of the pool (requests
for a user another server owns are proxied to it, digest and all), and when a server
dies its users stay reachable without registering again — the survivors load its
registrations from the pool's store once its lease expires — while acknowledged
contact-list writes keep going and none is lost."""
import json
import os
import re
import signal
import tempfile
import threading
import time
import unittest

from tandem_harness import Deployment, Sipp, http, run_sipp, topology_text, wait_until

USERS = 1000
RENEW_SECONDS = 0.5
EXPIRY_SECONDS = 1.5
LEASE_TIMERS = f"\n[pool]\nlease_renew_seconds = {RENEW_SECONDS}\nlease_expiry_seconds = {EXPIRY_SECONDS}\n"


def pool_topology(authenticate):
    return topology_text([{"fqdn": "pool1.example.com", "site": "siteA", "servers": ["fe1", "fe2", "fe3"]}],
                         sip_extra="" if authenticate else "authenticate = false", extra=LEASE_TIMERS)


def local_pool_status(d, server_id):
    code, body = d.admin(server_id, "/pool/status?local=1")
    return json.loads(body) if code == 200 else None


def registered_users(d):
    status = local_pool_status(d, "fe1")
    return {s["id"]: s["registered_users"] for s in status["servers"]} if status else {}


def request_count(d, server_id, method):
    return d.metric(server_id, f'tandem_sip_requests_total{{method="{method}"}}')


class ContactWriter(threading.Thread):
    """Adds contacts over the admin API, round-robin over the servers, and remembers
    every write a server acknowledged (200). A refused connection (a dead server) is
    not an acknowledgement; the next write goes to the next server."""

    def __init__(self, d, server_ids):
        super().__init__(daemon=True)
        self.urls = [d.server(s)["admin_url"] for s in server_ids]
        self.token = d.token()
        self.acknowledged = []
        self.stopping = threading.Event()

    def run(self):
        n = 0
        while not self.stopping.is_set():
            owner = f"sip:user{n % 20}@example.com"
            contact = f"sip:contact{n}@example.com"
            try:
                code, _ = http("POST", self.urls[n % len(self.urls)] + "/users/contacts?user=" + owner, self.token,
                               json.dumps({"contact": contact}), timeout=5)
                if code == 200:
                    self.acknowledged.append((owner, contact))
            except OSError:
                pass
            n += 1

    def stop(self):
        self.stopping.set()
        self.join(30)


class PoolProxyTest(unittest.TestCase):
    """With digest on: a client may use any server of its pool."""

    def setUp(self):
        self.d = Deployment(pool_topology(authenticate=True))
        self.addCleanup(self.d.close)
        self.d.up()
        wait_until(lambda: (local_pool_status(self.d, "fe1") or {}).get("live_servers") == 3, what="three live servers")
        work = tempfile.mkdtemp(prefix="pool-proxy-")
        path = os.path.join(work, "users.csv")
        with open(path, "w") as f:
            f.write("uri,pool,password\n")
            for user in ("alice", "bob", "carol", "dave", "erin", "frank"):
                f.write(f"sip:{user}@example.com,pool1.example.com,{user}-secret\n")
        self.d.tandem("user", "import", path, check=True)

    def test_register_and_message_through_every_server(self):
        d = self.d
        ports = {s: d.sip_port(s) for s in ("fe1", "fe2", "fe3")}
        before = sum(d.status(s)["sip"]["registered_users"] for s in ports)
        # Each user registers (with digest: the owner challenges, the proxy relays) through
        # fe1 and is messaged through fe3: most of these cross to another server.
        devices = {}
        for user in ("alice", "bob", "carol", "dave", "erin", "frank"):
            device = Sipp(ports["fe1"], "uas_message.xml", [], server_mode=True)
            self.addCleanup(device.stop)
            code, diagnostics = run_sipp(ports["fe1"], "register_contact.xml",
                                         [(user, f"{user}-secret", "example.com")],
                                         variables={"contact_port": device.local_port})
            self.assertEqual(code, 0, diagnostics + d.logs())
            devices[user] = device
        # Registrations live on their owners only, not where they arrived.
        self.assertEqual(sum(d.status(s)["sip"]["registered_users"] for s in ports) - before, 6)
        for user, device in devices.items():
            code, diagnostics = run_sipp(ports["fe3"], "message.xml", [("alice", user, "example.com")],
                                         variables={"expect": 200})
            self.assertEqual(code, 0, diagnostics + d.logs())
            code, diagnostics = device.wait(timeout=10)
            self.assertEqual(code, 0, diagnostics)
        forwarded = 0
        for s in ports:
            body = d.admin(s, "/metrics")[1]
            found = re.search(r"tandem_sip_pool_forwarded_total (\d+)", body)
            forwarded += int(found.group(1)) if found else 0
        self.assertGreater(forwarded, 0, "some requests must have crossed to their owner")


class PoolTakeoverTest(unittest.TestCase):
    def setUp(self):
        self.d = Deployment(pool_topology(authenticate=False))
        self.addCleanup(self.d.close)
        self.d.up()
        wait_until(lambda: all((local_pool_status(self.d, s) or {}).get("live_servers") == 3
                               for s in ("fe1", "fe2", "fe3")), what="three live servers")
        work = tempfile.mkdtemp(prefix="pool-takeover-")
        path = os.path.join(work, "users.csv")
        with open(path, "w") as f:
            f.write("uri,pool,password\n")
            for i in range(USERS):
                f.write(f"sip:user{i}@example.com,pool1.example.com,secret{i}\n")
        self.d.tandem("user", "import", path, check=True)

    def test_a_killed_servers_users_stay_reachable_without_registering_again(self):
        d = self.d
        ports = {s: d.sip_port(s) for s in ("fe1", "fe2", "fe3")}
        writer = ContactWriter(d, ["fe1", "fe2", "fe3"])
        writer.start()
        self.addCleanup(writer.stop)

        # 1,000 devices (one sipp UAS answers for all of them), registered through fe1:
        # about two thirds of the REGISTERs are proxied to their owners.
        device = Sipp(ports["fe1"], "uas_message.xml", [], server_mode=True, calls=USERS)
        self.addCleanup(device.stop)
        code, diagnostics = run_sipp(ports["fe1"], "register_contact_noauth.xml",
                                     [(f"user{i}", "-", "example.com") for i in range(USERS)], calls=USERS,
                                     variables={"contact_port": device.local_port},
                                     extra_args=("-r", "1000", "-l", "200"))
        self.assertEqual(code, 0, diagnostics + d.logs())
        counts = wait_until(lambda: (lambda c: c if sum(v or 0 for v in c.values()) == USERS else None)(
            registered_users(d)), what="1,000 registered users")
        self.assertGreater(counts["fe2"], 0)
        registers_before = sum(request_count(d, s, "REGISTER") for s in ("fe1", "fe3"))

        # Soft state reaches the store within 100 ms (what a server accepted in its last
        # 100 ms before dying is the window this design may lose): wait until fe2 has
        # written back everything, and until the writer has a few acknowledged writes.
        wait_until(lambda: d.metric("fe2", "tandem_pool_soft_state_queued_rows") == 0 and
                   d.metric("fe2", "tandem_pool_soft_state_rows_written_total") >= counts["fe2"],
                   what="fe2's registrations written back")
        wait_until(lambda: len(writer.acknowledged) >= 30, what="acknowledged contact writes")
        killed_at = time.monotonic()
        os.kill(d.server("fe2")["pid"], signal.SIGKILL)

        # The survivors notice the expiry and load fe2's users; then every user,
        # fe2's included, gets a MESSAGE through fe1 and the devices answer 200.
        wait_until(lambda: all((local_pool_status(d, s) or {}).get("live_servers") == 2 for s in ("fe1", "fe3")),
                   timeout=EXPIRY_SECONDS + 10, interval=0.02, what="fe2's groups to be taken over")
        taken_over = time.monotonic() - killed_at
        code, diagnostics = run_sipp(ports["fe1"], "message.xml",
                                     [("user0", f"user{i}", "example.com") for i in range(USERS)], calls=USERS,
                                     variables={"expect": 200}, extra_args=("-r", "2000", "-l", "300"))
        reachable = time.monotonic() - killed_at
        self.assertEqual(code, 0, diagnostics + d.logs())
        code, diagnostics = device.wait(timeout=30)
        self.assertEqual(code, 0, "every device got its MESSAGE\n" + diagnostics)
        print(f"\ntakeover: fe2's groups taken over {taken_over:.2f} s after kill -9, all {USERS} users reached "
              f"{reachable:.2f} s after (lease expiry {EXPIRY_SECONDS} s)")
        self.assertLessEqual(reachable, EXPIRY_SECONDS + 2.0)
        self.assertEqual(sum(request_count(d, s, "REGISTER") for s in ("fe1", "fe3")), registers_before,
                         "nobody registered again")

        writer.stop()
        self.assertGreater(len(writer.acknowledged), 30)
        stored = {}
        for owner in {o for o, _ in writer.acknowledged}:
            code, body = d.admin("fe3", "/users/contacts?user=" + owner)
            self.assertEqual(code, 200, body)
            stored[owner] = {c["contact"] for c in json.loads(body)["contacts"]}
        missing = [(o, c) for o, c in writer.acknowledged if c not in stored[o]]
        self.assertEqual(missing, [], "every acknowledged write is present")


if __name__ == "__main__":
    unittest.main()
