"""The registrar driven by SIP clients nobody here wrote: sipp, sipsak and baresip,
against a real single-server tandemd (UDP and TCP on loopback)."""
import glob
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from tandem_harness import Deployment, is_running, run_sipp, topology_text, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
RFC4475 = os.path.join(os.environ.get("TANDEM_SOURCE_DIR", os.path.join(HERE, "../..")), "..", "shared",
                       "testdata", "rfc4475")


def single_server():
    return topology_text([{"fqdn": "pool1.example.com", "site": "siteA", "servers": ["fe1"]}])


class RegistrarInteropTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.deployment = Deployment(single_server())
        cls.deployment.up()
        cls.sip_port = int(cls.deployment.server("fe1")["sip"].rsplit(":", 1)[1])
        for user, password in (("alice", "alice-secret"), ("bob", "bob-secret")):
            path = os.path.join(cls.deployment.dir, f"{user}.pw")
            with open(path, "w") as f:
                f.write(password + "\n")
            cls.deployment.tandem("user", "add", f"sip:{user}@example.com", "--pool", "pool1.example.com",
                                  "--password-file", path, check=True)

    @classmethod
    def tearDownClass(cls):
        cls.deployment.close()

    def sip_status(self):
        return self.deployment.status("fe1")["sip"]

    def metric(self, name):
        code, text = self.deployment.admin("fe1", "/metrics")
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def test_sipp_register_with_md5_digest_refresh_and_unregister_over_udp_and_tcp(self):
        for transport in ("u1", "t1"):
            with self.subTest(transport=transport):
                before = self.sip_status()["registered_users"]
                code, diagnostics = run_sipp(self.sip_port, "register_digest.xml",
                                             [("alice", "alice-secret", "example.com")], transport=transport)
                self.assertEqual(code, 0, diagnostics)
                self.assertEqual(self.sip_status()["registered_users"], before + 1)
                code, diagnostics = run_sipp(self.sip_port, "unregister.xml",
                                             [("alice", "alice-secret", "example.com")], transport=transport)
                self.assertEqual(code, 0, diagnostics)
                self.assertEqual(self.sip_status()["registered_users"], before)

    def test_sipp_wrong_password_is_refused_and_registers_nothing(self):
        before = self.metric('tandem_registrar_responses_total{code="403"}')
        users_before = self.sip_status()["registered_users"]
        code, diagnostics = run_sipp(self.sip_port, "register_wrong_password.xml",
                                     [("bob", "not-bob-secret", "example.com")])
        self.assertEqual(code, 0, diagnostics)
        self.assertEqual(self.sip_status()["registered_users"], users_before)
        self.assertEqual(self.metric('tandem_registrar_responses_total{code="403"}'), before + 1)

    def test_sipsak_replays_every_rfc4475_message_and_the_server_still_answers(self):
        files = sorted(glob.glob(os.path.join(RFC4475, "*.dat")))
        self.assertEqual(len(files), 49)
        for transport in ("udp", "tcp"):
            for path in files:
                # -i: send the file as is (no Via added); -L: the files already hold CRLFs.
                subprocess.run(["sipsak", "-f", path, "-i", "-L", "-E", transport, "-Z", "20",
                                "-s", f"sip:127.0.0.1:{self.sip_port}"],
                               capture_output=True, timeout=30)
                self.assertTrue(is_running(self.deployment.pids[0]), f"tandemd died on {path} over {transport}")
            options = subprocess.run(["sipsak", "-vv", "-E", transport, "-s", f"sip:alice@127.0.0.1:{self.sip_port}"],
                                     capture_output=True, text=True, timeout=30)
            self.assertEqual(options.returncode, 0, options.stdout + options.stderr)
            self.assertIn("200 OK", options.stdout)
        self.assertGreater(self.metric("tandem_sip_malformed_total"), 0, "malformed torture messages are counted")


class BaresipInteropTest(unittest.TestCase):
    """baresip 1.0 (libre) fails on any SHA-256 challenge it is offered, even next to an
    MD5 one, so this pool offers MD5 only: `digest_algorithms = ["MD5"]`."""

    def setUp(self):
        self.deployment = Deployment(topology_text([{"fqdn": "pool1.example.com", "site": "siteA", "servers": ["fe1"]}],
                                                   sip_extra='digest_algorithms = ["MD5"]'))
        self.addCleanup(self.deployment.close)
        self.deployment.up()
        self.sip_port = int(self.deployment.server("fe1")["sip"].rsplit(":", 1)[1])
        path = os.path.join(self.deployment.dir, "carol.pw")
        with open(path, "w") as f:
            f.write("carol-secret\n")
        self.deployment.tandem("user", "add", "sip:carol@example.com", "--pool", "pool1.example.com",
                               "--password-file", path, check=True)

    def test_baresip_registers_with_digest(self):
        home = tempfile.mkdtemp(prefix="baresip-")
        self.addCleanup(shutil.rmtree, home, True)
        with open(os.path.join(home, "accounts"), "w") as f:
            f.write(f'<sip:carol@example.com>;auth_pass=carol-secret;outbound="sip:127.0.0.1:{self.sip_port};transport=udp"'
                    ';regint=600\n')
        with open(os.path.join(home, "config"), "w") as f:
            f.write("module_path /usr/lib/baresip/modules\n"
                    "sip_listen 127.0.0.1:0\n"  # baresip also binds TCP and TLS beside it: let the kernel pick
                    "module account.so\n")
        baresip = subprocess.Popen(["stdbuf", "-oL", "baresip", "-4", "-f", home, "-t", "60"], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
        self.addCleanup(lambda: (baresip.poll() is None and baresip.kill(), baresip.wait(), baresip.stdout.close()))
        seen = []
        for line in baresip.stdout:
            seen.append(line)
            if re.search(r"carol@example.com.*200 OK", line):
                break
        else:
            self.fail("baresip never registered:\n" + "".join(seen[-30:]))
        wait_until(lambda: self.deployment.status("fe1")["sip"]["registered_users"] >= 1, what="tandem to show carol registered")



if __name__ == "__main__":
    unittest.main()
