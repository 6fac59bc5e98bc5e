"""Presence, instant messages and meeting chat between sipp user agents through a
real single-server tandemd: PUBLISH/SUBSCRIBE/NOTIFY with PIDF, a blocked watcher,
MESSAGE delivery to a registered device, and a meeting chat fan-out."""
import json
import os
import unittest

from tandem_harness import Deployment, Sipp, free_ports, run_sipp, topology_text, wait_until

USERS = {"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret", "dave": "dave-secret"}


class PresenceAndMessagingTest(unittest.TestCase):
    def setUp(self):
        self.deployment = Deployment(topology_text([{"fqdn": "pool1.example.com", "site": "siteA",
                                                     "servers": ["fe1"]}]))
        self.addCleanup(self.deployment.close)
        self.deployment.up()
        self.sip_port = int(self.deployment.server("fe1")["sip"].rsplit(":", 1)[1])
        for user, password in USERS.items():
            path = os.path.join(self.deployment.dir, f"{user}.pw")
            with open(path, "w") as f:
                f.write(password + "\n")
            self.deployment.tandem("user", "add", f"sip:{user}@example.com", "--pool", "pool1.example.com",
                                   "--password-file", path, check=True)

    def presence_status(self):
        return self.deployment.status("fe1")["sip"]["presence"]

    def start_device(self, user):
        """A sipp UAS waiting for one MESSAGE, registered as `user`'s device."""
        device = Sipp(self.sip_port, "uas_message.xml", [], server_mode=True)
        self.addCleanup(device.stop)
        code, diagnostics = run_sipp(self.sip_port, "register_contact.xml", [(user, USERS[user], "example.com")],
                                     variables={"contact_port": device.local_port})
        self.assertEqual(code, 0, diagnostics)
        return device

    def test_watcher_on_the_contact_list_sees_publish_and_blocked_watcher_sees_offline(self):
        d = self.deployment
        d.tandem("user", "contacts", "add", "sip:alice@example.com", "sip:bob@example.com", check=True)
        d.tandem("user", "privacy", "set", "sip:alice@example.com", "--block", "sip:carol@example.com", check=True)
        d.tandem("user", "note", "set", "sip:alice@example.com", "back at 3", check=True)
        bob = Sipp(self.sip_port, "subscribe_then_open.xml", [("bob", "alice", "example.com")])
        self.addCleanup(bob.stop)
        carol = Sipp(self.sip_port, "subscribe_then_closed.xml", [("carol", "alice", "example.com")])
        self.addCleanup(carol.stop)
        wait_until(lambda: self.presence_status()["subscriptions"] == 2, what="both watchers subscribed")

        code, diagnostics = run_sipp(self.sip_port, "publish_open.xml", [("alice", "-", "example.com")])
        self.assertEqual(code, 0, diagnostics)
        code, diagnostics = bob.wait()
        self.assertEqual(code, 0, "bob must see alice open:\n" + diagnostics)
        code, diagnostics = carol.wait()
        self.assertEqual(code, 0, "blocked carol must see alice closed:\n" + diagnostics)
        self.assertEqual(self.presence_status()["publications"], 1)

    def test_message_reaches_the_registered_device(self):
        bob = self.start_device("bob")
        code, diagnostics = run_sipp(self.sip_port, "message.xml", [("alice", "bob", "example.com")],
                                     variables={"expect": 200})
        self.assertEqual(code, 0, diagnostics)
        code, diagnostics = bob.wait()
        self.assertEqual(code, 0, "bob's device must receive the MESSAGE:\n" + diagnostics)

    def test_message_to_unknown_or_unregistered_users(self):
        code, diagnostics = run_sipp(self.sip_port, "message.xml", [("alice", "nobody", "example.com")],
                                     variables={"expect": 404})
        self.assertEqual(code, 0, diagnostics)
        code, diagnostics = run_sipp(self.sip_port, "message.xml", [("alice", "dave", "example.com")],
                                     variables={"expect": 480})
        self.assertEqual(code, 0, diagnostics)

    def test_meeting_chat_reaches_every_registered_attendee(self):
        created = self.deployment.tandem(
            "--json", "meeting", "create", "--organizer", "sip:alice@example.com", "--subject", "standup",
            "--start", "2030-01-01T09:00:00Z", "--end", "2030-01-01T09:15:00Z",
            "--attendee", "sip:bob@example.com", "--attendee", "sip:dave@example.com", check=True)
        meeting_id = json.loads(created.stdout)["id"]
        bob = self.start_device("bob")
        dave = self.start_device("dave")
        code, diagnostics = run_sipp(self.sip_port, "message.xml", [("alice", f"meeting.{meeting_id}", "example.com")],
                                     variables={"expect": 200})
        self.assertEqual(code, 0, diagnostics)
        for device in (bob, dave):
            code, diagnostics = device.wait()
            self.assertEqual(code, 0, "every attendee's device must get the chat message:\n" + diagnostics)
        # Someone outside the meeting may not post to it.
        code, diagnostics = run_sipp(self.sip_port, "message.xml", [("carol", f"meeting.{meeting_id}", "example.com")],
                                     variables={"expect": 403})
        self.assertEqual(code, 0, diagnostics)


if __name__ == "__main__":
    unittest.main()
