#!/usr/bin/env python3
"""bench/dr: pool failover RTO and failback time, measured by `tandem drill`.

Runs the drill twice on the two-site example (two pools of three servers, SQLite
back-ends, backup sync interval 2 s) with free ports:
  - 10,000 users per pool, for the RTO: from the start of `tandem pool failover
    --pool pool1 --disaster` to every pool1 user registered with pool2 and answering
    a MESSAGE sent through pool2;
  - 20,000 users per pool, for the failback time: from the start of `tandem pool
    failback --pool pool1` to every pool1 user registered with pool1 again and
    answering a MESSAGE sent through pool2.
Each run also reports the RPO (acknowledged contact-list writes lost, against the
bound the failover reported), the CMS failover time and the backup verify result.

  bench/dr/run.py [--bin build/release/bin] [--rto-users 10000] [--failback-users 20000]

The phones are the drill's own (one UDP socket carries many users); they learn at
once that their server died (as a TCP client would) and are signed out when the
failback command ends; they retry every second while they cannot register.

A benchmark, not a test: it prints figures against the targets (RTO <= 10 s, failback
<= 30 s; Skype for Business Server: pool failover RTO 15-20 min, failback up to 60 min
for 20,000 users).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

RTO_TARGET_S = 10.0
FAILBACK_TARGET_S = 30.0


def run_drill(tandem, users, work, step_timeout):
    import tandem_harness as h  # noqa: E402 (needs TANDEM_BIN_DIR first)
    topology = os.path.join(work, f"two-sites-{users}.toml")
    with open(topology, "w") as f:
        f.write(h.topology_text(h.two_site_pools(), sync_interval=2))
    data_dir = os.path.join(work, f"data-{users}")
    command = [tandem, "--json", "drill", topology, "--users", str(users), "--data-dir", data_dir,
               "--step-timeout", str(step_timeout)]
    print(f"$ {' '.join(command)}", flush=True)
    # Progress (stderr) goes straight to the terminal; the report is stdout.
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"the drill with {users} users printed no report (exit {result.returncode})")
    if result.returncode != 0:
        print(f"the drill with {users} users FAILED (data dir kept: {data_dir}): "
              f"{report.get('failure') or report.get('failed_checks')}", flush=True)
    return report


def figure(value, unit="s"):
    return "-" if value is None else f"{value:.2f} {unit}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=os.path.join(ROOT, "build", "release", "bin"))
    parser.add_argument("--rto-users", type=int, default=10000)
    parser.add_argument("--failback-users", type=int, default=20000)
    parser.add_argument("--step-timeout", type=int, default=600)
    args = parser.parse_args()
    os.environ["TANDEM_BIN_DIR"] = os.path.abspath(args.bin)
    tandem = os.path.join(os.path.abspath(args.bin), "tandem")
    work = tempfile.mkdtemp(prefix="bench-dr-")
    reports = {}
    try:
        for users in sorted({args.rto_users, args.failback_users}):
            reports[users] = run_drill(tandem, users, work, args.step_timeout)
    finally:
        if all(r.get("passed") for r in reports.values()):
            shutil.rmtree(work, ignore_errors=True)

    print("\nDR drill figures (two pools of three servers on one 2-core machine, SQLite, sync interval 2 s)")
    print(f"{'users/pool':>10} {'RTO':>9} {'failback':>9} {'CMS f/o':>8} {'writes lost':>12} "
          f"{'bound':>8} {'verify':>8} {'result':>7}")
    for users, report in sorted(reports.items()):
        rpo = report.get("rpo", {})
        lost = f"{rpo.get('writes_lost', '-')}/{rpo.get('writes_acknowledged_before_loss', '-')}"
        print(f"{users:>10} {figure(report.get('rto', {}).get('seconds')):>9} "
              f"{figure(report.get('failback', {}).get('seconds')):>9} "
              f"{figure(report.get('cms_failover', {}).get('seconds')):>8} {lost:>12} "
              f"{figure(rpo.get('bound_seconds')):>8} "
              f"{'ok' if report.get('verify', {}).get('consistent') else 'DIFFERS':>8} "
              f"{'passed' if report.get('passed') else 'FAILED':>7}")
    rto = reports.get(args.rto_users, {}).get("rto", {}).get("seconds")
    failback = reports.get(args.failback_users, {}).get("failback", {}).get("seconds")
    print(f"\nRTO for {args.rto_users} users: {figure(rto)} (target <= {RTO_TARGET_S:.0f} s: "
          f"{'met' if rto is not None and rto <= RTO_TARGET_S else 'NOT met'})")
    print(f"failback for {args.failback_users} users: {figure(failback)} (target <= {FAILBACK_TARGET_S:.0f} s: "
          f"{'met' if failback is not None and failback <= FAILBACK_TARGET_S else 'NOT met'})")


if __name__ == "__main__":
    main()
