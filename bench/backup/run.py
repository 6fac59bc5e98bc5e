#!/usr/bin/env python3
"""bench/backup: the Backup Service between two paired pools.

1. Replication lag under sustained load: writers change presence notes through the
   admin API of both pools at once (default 2,000 changes/s on each), and a poller
   reads each partner's SQLite store every 10 ms; a change's lag is the time from
   its commit on the source (the row's updated_at_ms, copied verbatim) to the moment
   it is seen in the partner's store. Prints the write rate reached and lag
   p50/p99/max per direction.
2. Initial sync: pool1 holds N users with M contacts each (default 100,000 x 50,
   written straight into its SQLite store while its Backup Service is stopped);
   `tandem backup sync` is timed from `service start` to the partner having applied
   the snapshot. Prints seconds and rows/s, then times `tandem backup verify`.

  bench/backup/run.py [--bin build/release/bin] [--rate 2000] [--seconds 20]
                      [--users 100000] [--contacts 50] [--skip-lag] [--skip-initial-sync]

A benchmark, not a test: it prints figures. Targets: p99 lag <= 1 s; initial sync of
100,000 users <= 60 s (Skype for Business: a sync every 2 minutes, RPO 5 minutes).
"""
import argparse
import http.client
import json
import multiprocessing
import os
import sqlite3
import statistics
import sys
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

POOL1, POOL2 = "pool1.example.com", "pool2.example.com"


def pools():
    return [{"fqdn": POOL1, "site": "siteA", "servers": ["p1fe1"], "backup_pool": POOL2},
            {"fqdn": POOL2, "site": "siteB", "servers": ["p2fe1"], "backup_pool": POOL1}]


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] if values else float("nan")


def writer(admin_url, token, owners, rate, seconds, counter):
    """Sets notes at `rate` per second over one keep-alive connection."""
    url = urllib.parse.urlparse(admin_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    start = time.monotonic()
    sent = 0
    while time.monotonic() - start < seconds:
        due = start + sent / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        owner = owners[sent % len(owners)]
        body = json.dumps({"note": f"n{sent}"})
        conn.request("PUT", "/users/note?user=" + urllib.parse.quote(owner), body, headers)
        response = conn.getresponse()
        response.read()
        if response.status == 200:
            with counter.get_lock():
                counter.value += 1
        sent += 1


def poller(db_path, home_pool, seconds, results):
    """Records, for every note change seen in the copy, now - its source commit time."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    seen = {}
    lags = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        now_ms = time.time() * 1000
        for owner, note, updated in db.execute(
                "SELECT owner, note, updated_at_ms FROM presence_notes WHERE home_pool = ?", (home_pool,)):
            if seen.get(owner) != note:
                if owner in seen:
                    lags.append(now_ms - updated)
                seen[owner] = note
        time.sleep(0.01)
    results.put(lags)


def bench_lag(h, rate, seconds):
    d = h.Deployment(h.topology_text(pools(), sync_interval=1))
    try:
        d.up()
        users = [(f"sip:a{i}@example.com", POOL1) for i in range(200)] + \
                [(f"sip:b{i}@example.com", POOL2) for i in range(200)]
        csv = os.path.join(d.dir, "users.csv")
        with open(csv, "w") as f:
            f.writelines(f"{uri},{pool},secret\n" for uri, pool in users)
        d.tandem("user", "import", csv, check=True)
        token = d.token()
        counters = {POOL1: multiprocessing.Value("l", 0), POOL2: multiprocessing.Value("l", 0)}
        results = multiprocessing.Queue()
        processes = []
        per_pool_writers = 4
        for server, pool, prefix in (("p1fe1", POOL1, "a"), ("p2fe1", POOL2, "b")):
            owners = [u for u, p in users if p == pool]
            for i in range(per_pool_writers):
                processes.append(multiprocessing.Process(
                    target=writer, args=(d.server(server)["admin_url"], token, owners[i::per_pool_writers],
                                         rate / per_pool_writers, seconds, counters[pool])))
        # pool1's changes are seen in pool2's store, and the other way round.
        pollers = [multiprocessing.Process(target=poller, args=(os.path.join(d.data_dir, "pool2.db"), POOL1,
                                                                seconds + 2, results)),
                   multiprocessing.Process(target=poller, args=(os.path.join(d.data_dir, "pool1.db"), POOL2,
                                                                seconds + 2, results))]
        for p in pollers + processes:
            p.start()
        lags = [results.get(timeout=seconds + 60) for _ in pollers]
        for p in pollers + processes:
            p.join()
        print(f"replication lag, {rate}/s target on each pool for {seconds} s (1 server per pool, SQLite):")
        for (source, target), values in zip(((POOL1, POOL2), (POOL2, POOL1)), lags):
            print(f"  {source} -> {target}: {counters[source].value / seconds:7.0f} changes/s acknowledged, "
                  f"{len(values)} sampled: lag p50 {percentile(values, 50):6.0f} ms  p99 {percentile(values, 99):6.0f} ms"
                  f"  max {max(values) if values else float('nan'):6.0f} ms")
        all_lags = lags[0] + lags[1]
        print(f"  overall p99 {percentile(all_lags, 99):.0f} ms (target <= 1000 ms)")
    finally:
        d.close()


def bench_initial_sync(h, users, contacts):
    d = h.Deployment(h.topology_text(pools(), sync_interval=1))
    try:
        d.up()
        d.tandem("service", "stop", "backup", "--pool", POOL1, check=True)
        seed = os.path.join(d.dir, "seed.csv")
        with open(seed, "w") as f:
            f.write(f"sip:seed@example.com,{POOL1},secret\n")
        d.tandem("user", "import", seed, check=True)  # the module has a head: a snapshot is due
        d.tandem("down", check=True)
        started = time.monotonic()
        db = sqlite3.connect(os.path.join(d.data_dir, "pool1.db"), timeout=30)
        db.execute("PRAGMA synchronous = OFF")
        now = int(time.time() * 1000)
        ha1 = "0" * 32
        ha1_256 = "0" * 64
        db.executemany("INSERT INTO users VALUES (?, ?, 'example.com', ?, ?, ?, ?, ?, ?)",
                       ((f"sip:u{i}@example.com", f"u{i}", POOL1, ha1, ha1_256, ha1, ha1_256, now)
                        for i in range(users)))
        db.executemany("INSERT INTO contacts VALUES (?, ?, '', '[]', ?, ?)",
                       ((f"sip:u{i}@example.com", f"sip:u{(i + k + 1) % users}@example.com", POOL1, now)
                        for i in range(users) for k in range(contacts)))
        db.commit()
        db.close()
        rows = users * (contacts + 1)
        print(f"initial sync: wrote {users:,} users with {contacts} contacts each ({rows:,} rows) into pool1's "
              f"store in {time.monotonic() - started:.1f} s")
        d.up()
        started = time.monotonic()
        d.tandem("service", "start", "backup", "--pool", POOL1, check=True)
        synced = h.run_tandem(["backup", "sync", "--pool", POOL1, "--module", "user", "--timeout", "900"], d.data_dir,
                              timeout=960)
        seconds = time.monotonic() - started
        if synced.returncode != 0:
            print(f"  sync FAILED after {seconds:.1f} s: {synced.stderr.strip()}")
            return
        print(f"  initial sync of {users:,} users ({rows:,} rows): {seconds:.1f} s, {rows / seconds:,.0f} rows/s "
              f"(target <= 60 s)")
        started = time.monotonic()
        verified = h.run_tandem(["backup", "verify", "--pool", POOL1, "--module", "user"], d.data_dir, timeout=900)
        print(f"  verify: {time.monotonic() - started:.1f} s: {verified.stdout.strip() or verified.stderr.strip()}")
    finally:
        d.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=os.path.join(ROOT, "build", "release", "bin"))
    parser.add_argument("--rate", type=int, default=2000, help="changes/s on each pool")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--users", type=int, default=100000)
    parser.add_argument("--contacts", type=int, default=50)
    parser.add_argument("--skip-lag", action="store_true")
    parser.add_argument("--skip-initial-sync", action="store_true")
    args = parser.parse_args()
    os.environ["TANDEM_BIN_DIR"] = os.path.abspath(args.bin)
    import tandem_harness as h  # noqa: E402 (needs TANDEM_BIN_DIR first)
    if not args.skip_lag:
        bench_lag(h, args.rate, args.seconds)
    if not args.skip_initial_sync:
        bench_initial_sync(h, args.users, args.contacts)


if __name__ == "__main__":
    main()
