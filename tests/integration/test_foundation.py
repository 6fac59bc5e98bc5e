"""Foundation: tandem up/down, CMS publish and replicas, admin token, clean failures.

Every test starts real tandemd processes with `tandem up` on free loopback ports.
"""
import json
import os
import signal
import socket
import subprocess
import tempfile
import unittest

from tandem_harness import (Deployment, SOURCE_DIR, TANDEM, http, is_running, processes_mentioning, run_tandem,
                            topology_text, two_site_pools, wait_until)


def cms_versions(deployment):
    """{server id: replica version or None} as `tandem cms status --json` reports it."""
    result = deployment.tandem("--json", "cms", "status")
    if result.returncode != 0:
        return None
    return {s["id"]: s["replica_version"] for s in json.loads(result.stdout)["servers"]}


class TwoSitesTest(unittest.TestCase):
    def setUp(self):
        self.deployment = Deployment(topology_text(two_site_pools()))
        self.addCleanup(self.deployment.close)
        self.deployment.up()

    def test_publish_reaches_every_server_and_pool2_survives_loss_of_the_cms_master(self):
        d = self.deployment
        wait_until(lambda: set((cms_versions(d) or {}).values()) == {1}, what="all six replicas at version 1")

        # Publish version 2 (a changed sync interval) through the CLI.
        with open(d.topology_path) as f:
            v2 = f.read().replace("sync_interval_seconds = 2", "sync_interval_seconds = 3")
        v2_path = os.path.join(d.dir, "v2.toml")
        with open(v2_path, "w") as f:
            f.write(v2)
        published = d.tandem("topology", "publish", v2_path)
        self.assertEqual(published.returncode, 0, published.stderr)
        self.assertIn("CMS version 2", published.stdout)
        versions = wait_until(lambda: (v := cms_versions(d)) and set(v.values()) == {2} and v,
                              what="all six servers at version 2")
        self.assertEqual(len(versions), 6)

        # Lose the CMS master pool: stop every pool1 server.
        pool1 = [s for s in d.state()["servers"] if s["pool"] == "pool1.example.com"]
        for server in pool1:
            os.kill(server["pid"], signal.SIGTERM)
        for server in pool1:
            wait_until(lambda: not is_running(server["pid"]), what=f"{server['id']} to stop")

        # pool2 keeps answering from its replicas, and says the master is unreachable.
        for server_id in ("p2fe1", "p2fe2", "p2fe3"):
            status = d.status(server_id)
            self.assertEqual(status["cms"]["version"], 2)
            self.assertFalse(status["cms"]["is_master_pool"])
        status = json.loads(d.tandem("--json", "cms", "status", check=True).stdout)
        self.assertFalse(status["master_reachable"])
        by_id = {s["id"]: s for s in status["servers"]}
        self.assertFalse(by_id["p1fe1"]["reachable"])
        self.assertEqual(by_id["p2fe2"]["replica_version"], 2)
        shown = json.loads(d.tandem("--json", "topology", "show", check=True).stdout)
        self.assertEqual(shown["cms_version"], 2)

        # A pool2 server restarted while the master is away starts from its replica.
        p2fe1 = d.server("p2fe1")
        os.kill(p2fe1["pid"], signal.SIGTERM)
        wait_until(lambda: not is_running(p2fe1["pid"]), what="p2fe1 to stop")
        restarted = subprocess.Popen(
            [os.path.join(os.path.dirname(TANDEM), "tandemd"), "--topology", d.topology_path, "--server", "p2fe1",
             "--data-dir", d.data_dir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: (restarted.kill(), restarted.wait()))
        status = wait_until(lambda: d.status("p2fe1") if is_running(restarted.pid) else "exited",
                            what="restarted p2fe1 to answer")
        self.assertNotEqual(status, "exited", d.logs())
        self.assertEqual(status["cms"]["version"], 2)
        self.assertFalse(status["cms"]["master_reachable"])

    def test_admin_api_refuses_requests_without_the_token_and_changes_nothing(self):
        d = self.deployment
        wait_until(lambda: d.status("p1fe1")["cms"]["version"] == 1, what="version 1")
        with open(d.topology_path) as f:
            body = json.dumps({"file": "x.toml", "toml": f.read()})
        for token in (None, "wrong-token"):
            code, answer = http("POST", d.server("p1fe1")["admin_url"] + "/cms/publish", token, body)
            self.assertEqual(code, 401, answer)
            code, _ = http("GET", d.server("p2fe1")["admin_url"] + "/status", token)
            self.assertEqual(code, 401)
            code, _ = http("GET", d.server("p2fe1")["admin_url"] + "/metrics", token)
            self.assertEqual(code, 401)
        # Health stays public so load balancers and `tandem up` can probe it.
        self.assertEqual(http("GET", d.server("p2fe1")["admin_url"] + "/health")[0], 200)
        self.assertEqual(d.status("p1fe1")["cms"]["version"], 1, "a refused publish must change nothing")
        code, metrics = d.admin("p1fe1", "/metrics")
        self.assertEqual(code, 200)
        self.assertIn("tandem_admin_unauthorized_requests_total 2", metrics)

    def test_invalid_publish_changes_nothing(self):
        d = self.deployment
        broken = os.path.join(d.dir, "broken.toml")
        with open(d.topology_path) as f:
            text = f.read()
        with open(broken, "w") as f:
            f.write(text.replace('master_pool = "pool1.example.com"', 'master_pool = "pool9.example.com"'))
        result = d.tandem("topology", "publish", broken)
        self.assertNotEqual(result.returncode, 0)
        self.assertRegex(result.stderr, r"broken\.toml:\d+: ")
        self.assertIn("nothing was published", result.stderr)
        self.assertEqual(d.status("p1fe1")["cms"]["version"], 1)


class LauncherTest(unittest.TestCase):
    def test_down_leaves_no_processes(self):
        d = Deployment(topology_text(two_site_pools()))
        self.addCleanup(d.close)
        d.up()
        pids = list(d.pids)
        self.assertEqual(len(pids), 6)
        self.assertTrue(all(is_running(p) for p in pids))
        down = d.tandem("down")
        self.assertEqual(down.returncode, 0, down.stderr)
        self.assertIn("Stopped 6 servers", down.stdout)
        self.assertEqual([p for p in pids if is_running(p)], [])
        self.assertEqual(processes_mentioning(d.data_dir), [])
        self.assertEqual(d.tandem("down").returncode, 0, "down with nothing running is not an error")

    def _foreground_up_then(self, send_signal):
        d = Deployment(topology_text(two_site_pools()))
        self.addCleanup(d.close)
        up = subprocess.Popen([TANDEM, "--data-dir", d.data_dir, "up", d.topology_path], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: (up.poll() is None and up.kill(), up.stdout.close(), up.stderr.close()))
        for line in up.stdout:
            if line.startswith("Running."):
                break
        else:
            self.fail(f"tandem up ended early: {up.stderr.read()}")
        pids = [s["pid"] for s in d.state()["servers"]]
        self.assertTrue(all(is_running(p) for p in pids))
        up.send_signal(send_signal)
        self.assertEqual(up.wait(timeout=30), 0)
        self.assertEqual([p for p in pids if is_running(p)], [])
        self.assertEqual(processes_mentioning(d.data_dir), [])
        self.assertFalse(os.path.exists(os.path.join(d.data_dir, "up.json")))

    def test_ctrl_c_of_tandem_up_stops_every_server(self):
        self._foreground_up_then(signal.SIGINT)

    def test_sigterm_of_tandem_up_stops_every_server(self):
        self._foreground_up_then(signal.SIGTERM)

    def test_killed_tandem_up_takes_its_servers_with_it(self):
        d = Deployment(topology_text([{"fqdn": "pool1.example.com", "site": "siteA", "servers": ["fe1"]}]))
        self.addCleanup(d.close)
        up = subprocess.Popen([TANDEM, "--data-dir", d.data_dir, "up", d.topology_path], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
        self.addCleanup(up.stdout.close)
        for line in up.stdout:
            if line.startswith("Running."):
                break
        pid = d.state()["servers"][0]["pid"]
        up.kill()
        up.wait()
        wait_until(lambda: not is_running(pid), what="the server to follow its killed launcher")

    def test_port_taken_fails_naming_the_server_and_leaves_nothing_running(self):
        d = Deployment(topology_text(two_site_pools()))
        self.addCleanup(d.close)
        with open(d.topology_path) as f:
            text = f.read()
        # Occupy p2fe2's admin port.
        port = int(text.split('id = "p2fe2"')[1].split("admin_port = ")[1].split()[0])
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        self.addCleanup(blocker.close)
        result = d.up(check=False)
        self.assertEqual(result.returncode, 1)
        self.assertIn("p2fe2", result.stderr)
        self.assertIn(f"{port}", result.stderr)
        self.assertIn("nothing was left running", result.stderr)
        self.assertEqual(processes_mentioning(d.data_dir), [])
        self.assertFalse(os.path.exists(os.path.join(d.data_dir, "up.json")))

    def test_bad_backend_path_fails_naming_the_server(self):
        pools = [{"fqdn": "pool1.example.com", "site": "siteA", "servers": ["fe1"],
                  "backend": '{ type = "sqlite", path = "/nonexistent-dir/pool1.db" }'}]
        d = Deployment(topology_text(pools))
        self.addCleanup(d.close)
        result = d.up(check=False)
        self.assertEqual(result.returncode, 1)
        self.assertIn("server fe1 of pool pool1.example.com could not start", result.stderr)
        self.assertIn("/nonexistent-dir/pool1.db", result.stderr)
        self.assertEqual(processes_mentioning(d.data_dir), [])

    def test_second_up_on_a_running_data_dir_is_refused(self):
        d = Deployment(topology_text([{"fqdn": "pool1.example.com", "site": "siteA", "servers": ["fe1"]}]))
        self.addCleanup(d.close)
        d.up()
        again = d.up(check=False)
        self.assertEqual(again.returncode, 1)
        self.assertIn("already running", again.stderr)
        self.assertIn("tandem down", again.stderr)
        self.assertTrue(is_running(d.pids[0]))

    def test_invalid_topology_starts_nothing(self):
        d = Deployment(topology_text([{"fqdn": "pool1.example.com", "site": "siteA", "servers": ["fe1"]}],
                                     cms_master="nowhere.example.com"))
        self.addCleanup(d.close)
        result = d.up(check=False)
        self.assertEqual(result.returncode, 1)
        self.assertRegex(result.stderr, r"topology\.toml:\d+: ")
        self.assertIn("nothing was started", result.stderr)
        self.assertFalse(os.path.exists(os.path.join(d.data_dir, "up.json")))


class ExampleTopologyTest(unittest.TestCase):
    """The README's run command uses examples/two-sites.toml exactly as shipped."""

    def test_shipped_two_site_example_comes_up_with_six_healthy_servers(self):
        data_dir = tempfile.mkdtemp(prefix="tandem-example-")
        example = os.path.join(SOURCE_DIR, "examples", "two-sites.toml")
        self.addCleanup(lambda: run_tandem(["down"], data_dir))
        result = run_tandem(["up", example, "--detach"], data_dir)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(result.stdout.count("healthy after"), 6)
        status = json.loads(run_tandem(["--json", "cms", "status"], data_dir, check=True).stdout)
        self.assertEqual(len(status["servers"]), 6)
        self.assertTrue(all(s["reachable"] for s in status["servers"]))

    def test_validate_reports_file_and_line(self):
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
            f.write('[sip]\ndomain = "example.com"\nbogus = 1\n')
        self.addCleanup(os.unlink, f.name)
        result = run_tandem(["topology", "validate", f.name])
        self.assertEqual(result.returncode, 1)
        self.assertIn(f"{f.name}:3: ", result.stderr)
        ok = run_tandem(["topology", "validate", os.path.join(SOURCE_DIR, "examples", "two-sites.toml")])
        self.assertEqual(ok.returncode, 0, ok.stderr)


if __name__ == "__main__":
    unittest.main()
