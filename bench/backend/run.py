#!/usr/bin/env python3
"""bench/backend: back-end failover time of a PostgreSQL pool.

Each trial starts a real PostgreSQL 15 primary with a synchronous standby
(scripts/pg-cluster.sh), a two-server tandem pool on it, and a writer that adds users
through the admin API; then kills the primary (immediate stop), runs
`tandem backend failover`, and measures from the kill to the first acknowledged
write through the promoted standby. Prints each trial and p50/max, and checks that
every write acknowledged before the kill is still there.

  bench/backend/run.py [--bin build/release/bin] [--trials 5]

A benchmark, not a test: it prints figures (target: <= 10 s; Skype for Business
mirroring with a witness: 5 min RTO).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
PG_CLUSTER = os.path.join(ROOT, "scripts", "pg-cluster.sh")


def trial(bin_dir, index):
    os.environ["TANDEM_BIN_DIR"] = bin_dir
    import tandem_harness as h  # noqa: E402 (needs TANDEM_BIN_DIR first)
    pg_dir = tempfile.mkdtemp(prefix="tandem-bench-pg-")
    os.chmod(pg_dir, 0o755)
    deployment = None
    try:
        subprocess.run(["bash", PG_CLUSTER, "start", pg_dir, "--standby"], check=True, capture_output=True,
                       timeout=180)
        dsn = open(os.path.join(pg_dir, "dsn")).read().strip()
        mirror = open(os.path.join(pg_dir, "standby.dsn")).read().strip()
        deployment = h.Deployment(h.topology_text([{
            "fqdn": "pool1.example.com", "site": "siteA", "servers": ["fe1", "fe2"],
            "backend": f'{{ type = "postgres", dsn = "{dsn}", mirror_dsn = "{mirror}" }}'}]))
        deployment.up()
        password = os.path.join(deployment.dir, "pw")
        open(password, "w").write("secret\n")
        acknowledged = []
        for n in range(50):  # acknowledged writes before the loss
            uri = f"sip:before{n}@example.com"
            if deployment.tandem("user", "add", uri, "--pool", "pool1.example.com",
                                 "--password-file", password).returncode == 0:
                acknowledged.append(uri)
        killed = time.monotonic()
        subprocess.run(["bash", PG_CLUSTER, "stop", pg_dir, "primary", "--immediate"], check=True,
                       capture_output=True, timeout=60)
        failover = deployment.tandem("backend", "failover", "--pool", "pool1.example.com")
        promoted = time.monotonic()
        if failover.returncode != 0:
            return None, f"failover failed: {failover.stderr.strip()}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            result = deployment.tandem("user", "add", "sip:after@example.com", "--pool", "pool1.example.com",
                                       "--password-file", password)
            if result.returncode == 0 or "already provisioned" in result.stderr:
                break
            time.sleep(0.05)
        served = time.monotonic()
        listed = deployment.tandem("user", "list").stdout
        lost = [uri for uri in acknowledged if uri not in listed]
        return (promoted - killed, served - killed, len(acknowledged), len(lost)), None
    finally:
        if deployment:
            deployment.close()
        subprocess.run(["bash", PG_CLUSTER, "stop", pg_dir], capture_output=True, timeout=120)
        shutil.rmtree(pg_dir, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=os.path.join(ROOT, "build", "release", "bin"))
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    print("back-end failover: kill -9-like stop of the PostgreSQL primary, `tandem backend failover`, "
          "first acknowledged write through the promoted standby")
    print(f"{'trial':<7}{'promote s':>11}{'write ok s':>12}{'acked':>7}{'lost':>6}")
    totals = []
    for index in range(args.trials):
        figures, error = trial(args.bin, index)
        if error:
            print(f"{index + 1:<7}{error}")
            continue
        promote, served, acked, lost = figures
        totals.append(served)
        print(f"{index + 1:<7}{promote:>11.2f}{served:>12.2f}{acked:>7}{lost:>6}", flush=True)
    if totals:
        print(f"\nkill to first write served: p50 {statistics.median(totals):.2f} s, max {max(totals):.2f} s "
              f"over {len(totals)} trials (target <= 10 s)")


if __name__ == "__main__":
    main()
