// PostgreSQL implementation of Store (libpq): the production back-end of a pool,
// made highly available by PostgreSQL's own synchronous streaming replication.
// Same semantics as the SQLite store, method for method.
//
// Connections: a small pool, opened on demand. The DSN is a libpq connection
// string or URI, multi-host allowed ("host=db1,db2 port=5432,5432 ...");
// target_session_attrs defaults to read-write, so after a failover new connections
// find the promoted standby. Defaults that the DSN may override: connect_timeout=3,
// target_session_attrs=read-write, client_encoding=UTF8, TCP keepalives.
//
// Failures: when the server goes away (restart, failover), an operation reconnects
// and runs again, with exponential backoff, for at most `retry_budget` (10 s), but
// only while that is safe: reads always; writes while their COMMIT was not sent. A
// write whose connection is lost during COMMIT may or may not have committed; it is
// reported as kUnavailable saying that the outcome is unknown, never run twice.
//
// Ordering: every write transaction holds one transaction-level advisory lock from
// BEGIN to COMMIT, so writers (of every process using the database) are serialized
// as they are with SQLite's BEGIN IMMEDIATE, and the change log's seq order is its
// commit order: a reader that saw seq N never later sees a smaller seq appear.
//
// Thread-safety: a PostgresStore may be used from any number of threads; each
// operation borrows one connection of the pool for its duration. Several processes
// may use the same database (migrations are serialized by an advisory lock).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "store/store.h"

namespace tandem {

struct PostgresStoreOptions {
  // Connections kept at most; an operation waits up to `pool_wait` for a free one.
  int max_connections = 4;
  std::chrono::milliseconds pool_wait{30'000};
  // How long an operation keeps reconnecting and retrying after the server went
  // away, and the backoff between tries (doubling from first to max).
  std::chrono::milliseconds retry_budget{10'000};
  std::chrono::milliseconds first_backoff{50};
  std::chrono::milliseconds max_backoff{1'000};
  // For tests only: called in every write transaction right before COMMIT is sent
  // (its change-log records are written, the writer lock is held), with the server
  // process id of the connection, so a test can inject a failure at that point.
  std::function<void(int backend_pid)> before_commit_for_testing;
};

// Connects to `dsn` (see above) and migrates the database. kUnavailable when no
// server could be reached within the retry budget.
Result<std::unique_ptr<Store>> OpenPostgresStore(const std::string& dsn, const PostgresStoreOptions& options);

}  // namespace tandem
