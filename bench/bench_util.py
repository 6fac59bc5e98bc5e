"""Helpers the benchmarks under bench/ share: free loopback ports, waiting for a
listener, and the single-server tandem topology they run against."""
import socket
import time


def free_port():
    """A port free for both UDP and TCP on loopback (sipp and the servers use both)."""
    for _ in range(100):
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def wait_for(predicate, timeout, interval=0.05):
    """Polls `predicate` until truthy or `timeout` s passed; returns its last value."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


def wait_for_port(port, timeout=20):
    def listening():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False
    if not wait_for(listening, timeout):
        raise RuntimeError(f"nothing listens on port {port}")


def write_single_server_topology(path, sip_port, admin_port, authenticate, domain="example.com"):
    """One standard pool, one server on loopback, SQLite back-end."""
    with open(path, "w") as f:
        f.write(f"""[sip]
domain = "{domain}"
authenticate = {"true" if authenticate else "false"}
[cms]
master_pool = "pool1.example.com"
[[sites]]
name = "A"
[[pools]]
fqdn = "pool1.example.com"
site = "A"
edition = "standard"
backend = {{ type = "sqlite", path = "pool1.db" }}
[[pools.servers]]
id = "fe1"
address = "127.0.0.1"
sip_port = {sip_port}
admin_port = {admin_port}
""")
