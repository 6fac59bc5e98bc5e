"""`tandem drill` on a two-site topology (free ports, a 0.5 s backup sync interval,
20 users per pool): it exits 0, its JSON report shows every user of the lost pool
served by the other pool after the disaster failover and at home again after the
failback, the acknowledged writes lost within the bound the failover reported, and
the copy verified; nothing it started is left running. Refusals (a port in use, not
two paired pools, a data dir that is not empty) start nothing."""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import unittest

from tandem_harness import TANDEM, is_running, processes_mentioning, topology_text, two_site_pools

POOL1, POOL2 = "pool1.example.com", "pool2.example.com"


class DrillTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="tandem-drill-test-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.data_dir = os.path.join(self.dir, "data")
        self.addCleanup(self.kill_leftovers)
        self.topology = self.write_topology("two-sites.toml", topology_text(two_site_pools(), sync_interval=0.5))

    def write_topology(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def kill_leftovers(self):
        for pid in processes_mentioning(self.data_dir):
            if is_running(pid):
                os.kill(pid, signal.SIGKILL)

    def drill(self, *args, topology=None, timeout=900):
        command = [TANDEM, "--json", "drill", topology or self.topology, "--data-dir", self.data_dir,
                   "--step-timeout", "120", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)

    def test_drill_fails_over_and_back_within_its_bounds(self):
        result = self.drill("--users", "20")
        self.assertEqual(result.returncode, 0, result.stdout[-5000:] + result.stderr[-30000:])
        report = json.loads(result.stdout)
        self.assertTrue(report["passed"], report)
        self.assertEqual((report["lost_pool"], report["backup_pool"], report["users_per_pool"]), (POOL1, POOL2, 20))
        self.assertEqual([s["step"] for s in report["steps"]],
                         ["start", "provision", "register", "messages", "writes", "lose", "cms failover",
                          "pool failover", "rpo", "return", "failback", "verify"])
        self.assertTrue(all(s["ok"] for s in report["steps"]))
        # pool1 held the CMS master: it was failed over first.
        self.assertTrue(report["cms_failover"]["needed"])
        self.assertGreater(report["cms_failover"]["seconds"], 0)
        # RPO: writes were acknowledged before the loss; what was lost is inside the bound.
        rpo = report["rpo"]
        self.assertGreater(rpo["writes_acknowledged_before_loss"], 0)
        self.assertTrue(rpo["within_bound"])
        self.assertEqual(rpo["lost_beyond_bound"], 0)
        self.assertEqual(rpo["writes_lost"], rpo["lost_within_bound"])
        self.assertIn("user", rpo["reported_lost_after_seconds"])
        self.assertLessEqual(rpo["measured_seconds"], rpo["bound_seconds"] + 0.1)  # the drill's tolerance
        # RTO and failback: every user served, each measured from its command's start.
        for key in ("rto", "failback"):
            measured = report[key]
            self.assertEqual((measured["served"], measured["users"]), (20, 20), key)
            self.assertGreater(measured["seconds"], 0, key)
            self.assertLessEqual(measured["all_registered_seconds"], measured["seconds"], key)
        self.assertEqual(report["writes"]["missing_at_home_after_failback"], 0)
        self.assertTrue(report["verify"]["consistent"])
        self.assertEqual(report["failed_checks"], [])
        # The step-by-step progress went to stderr, the report alone to stdout.
        self.assertIn("LOST pool1.example.com", result.stderr)
        self.assertIn("pool failover --pool pool1.example.com --disaster", result.stderr)
        # Everything the drill started was stopped.
        self.assertEqual(processes_mentioning(self.data_dir), [])

    def test_refusals_start_nothing(self):
        # A port of the topology in use (as when `tandem up` of it runs).
        with open(self.topology) as f:
            admin_port = int(next(line for line in f if line.startswith("admin_port")).split("=")[1])
        holder = socket.socket()
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", admin_port))
        holder.listen()
        try:
            result = self.drill()
        finally:
            holder.close()
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(f"127.0.0.1:{admin_port} (admin port of p1fe1)", result.stderr)
        self.assertIn("in use", result.stderr)
        self.assertFalse(os.path.exists(self.data_dir))

        # Not two paired pools.
        pools = two_site_pools()
        for pool in pools:
            pool.pop("backup_pool")
        unpaired = self.write_topology("unpaired.toml", topology_text(pools))
        result = self.drill(topology=unpaired)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("is not two pools paired with each other", result.stderr)

        # A data dir that holds something: the drill deletes a pool's store there.
        os.makedirs(self.data_dir)
        with open(os.path.join(self.data_dir, "keep.txt"), "w") as f:
            f.write("precious")
        result = self.drill()
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("is not empty", result.stderr)
        self.assertEqual(os.listdir(self.data_dir), ["keep.txt"])
        self.assertEqual(processes_mentioning(self.data_dir), [])


if __name__ == "__main__":
    unittest.main()
