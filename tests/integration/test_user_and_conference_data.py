"""User data and conference data driven through the tandem CLI and the admin API of
a real two-pool deployment: requests for a user homed in the other pool are
forwarded there; bad input is refused naming the field and changes nothing."""
import hashlib
import json
import os
import unittest

from tandem_harness import Deployment, topology_text, two_site_pools


class UserAndConferenceDataTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Deployment(topology_text(two_site_pools()))
        cls.d.up()
        password = os.path.join(cls.d.dir, "pw")
        with open(password, "w") as f:
            f.write("secret\n")
        for user, pool in (("alice", "pool1"), ("bob", "pool2"), ("carol", "pool1")):
            cls.d.tandem("user", "add", f"sip:{user}@example.com", "--pool", f"{pool}.example.com",
                         "--password-file", password, check=True)

    @classmethod
    def tearDownClass(cls):
        cls.d.close()

    def test_contacts_and_privacy_of_a_user_in_the_other_pool(self):
        d = self.d
        # Asked of pool1's servers (the CLI tries p1fe1 first) for bob, who lives in pool2.
        d.tandem("user", "contacts", "add", "sip:bob@example.com", "sip:alice@example.com", "--name", "Alice",
                 check=True)
        listed = json.loads(d.tandem("--json", "user", "contacts", "list", "sip:bob@example.com", check=True).stdout)
        self.assertEqual([c["contact"] for c in listed["contacts"]], ["sip:alice@example.com"])
        self.assertEqual(listed["contacts"][0]["home_pool"], "pool2.example.com")
        # pool2's own server holds it.
        code, body = d.admin("p2fe1", "/users/contacts?user=" + "sip:bob@example.com")
        self.assertEqual(code, 200, body)
        self.assertIn("sip:alice@example.com", body)

        d.tandem("user", "privacy", "set", "sip:bob@example.com", "--block", "sip:carol@example.com", check=True)
        privacy = json.loads(d.tandem("--json", "user", "privacy", "show", "sip:bob@example.com", check=True).stdout)
        self.assertIn("sip:carol@example.com", json.dumps(privacy))

        missing = d.tandem("user", "contacts", "remove", "sip:bob@example.com", "sip:nobody@example.com")
        self.assertNotEqual(missing.returncode, 0)
        self.assertIn("tandem: ", missing.stderr)

    def test_bad_input_is_refused_naming_the_field_and_changes_nothing(self):
        d = self.d
        before = d.admin("p1fe1", "/users/contacts?user=sip:carol@example.com")[1]
        for body, field in (("{not json", None),
                            (json.dumps({"contact": "sip:x@example.com", "colour": "red"}), "colour"),
                            (json.dumps({"contact": "not a uri"}), "contact")):
            code, answer = d.admin("p1fe1", "/users/contacts?user=sip:carol@example.com", method="POST", body=body)
            self.assertIn(code, (400, 422), answer)
            if field:
                self.assertIn(field, answer)
        self.assertEqual(d.admin("p1fe1", "/users/contacts?user=sip:carol@example.com")[1], before)

    def test_meeting_content_round_trip_and_size_limit(self):
        d = self.d
        created = json.loads(d.tandem(
            "--json", "meeting", "create", "--organizer", "sip:bob@example.com", "--subject", "review",
            "--start", "2030-05-01T10:00:00Z", "--end", "2030-05-01T11:00:00Z", "--attendee", "sip:alice@example.com",
            check=True).stdout)
        meeting_id = created["id"]
        self.assertEqual(len(created["pin"]), 6)

        slides = os.path.join(d.dir, "slides.bin")
        payload = os.urandom(3 * 1024 * 1024)
        with open(slides, "wb") as f:
            f.write(payload)
        d.tandem("meeting", "upload", meeting_id, slides, check=True)
        out = os.path.join(d.dir, "downloaded.bin")
        d.tandem("meeting", "download", meeting_id, "slides.bin", "-o", out, check=True)
        with open(out, "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(), hashlib.sha256(payload).hexdigest())

        too_big = os.path.join(d.dir, "too-big.bin")
        with open(too_big, "wb") as f:
            f.write(b"\0" * (50 * 1024 * 1024 + 1))
        refused = d.tandem("meeting", "upload", meeting_id, too_big)
        self.assertNotEqual(refused.returncode, 0)
        listing = json.loads(d.tandem("--json", "meeting", "show", meeting_id, check=True).stdout)
        self.assertNotIn("too-big.bin", json.dumps(listing))

        d.tandem("meeting", "cancel", meeting_id, check=True)
        shown = json.loads(d.tandem("--json", "meeting", "show", meeting_id, check=True).stdout)
        self.assertEqual(shown["state"], "cancelled")


if __name__ == "__main__":
    unittest.main()
