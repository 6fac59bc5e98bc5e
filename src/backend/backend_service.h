// The back-end HA part of one server: serves GET /backend/status and POST
// /backend/failover for every pool of the topology, and watches every PostgreSQL
// pool that has a standby: once per interval it asks the primary whether the standby
// is synchronous and remembers the answer (StandbySyncMemory). A failover is refused
// unless this server last saw the standby synchronous, so the operator asks a server
// that could watch the pair (every server watches every pair it can reach).
//
// Thread-safety: thread-safe; owns one background thread (Start/Stop). Borrows the
// replica and the clock, which must outlive it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "admin/http_server.h"
#include "backend/postgres_probe.h"
#include "backend/standby_sync_memory.h"
#include "cms/cms_replica.h"
#include "common/clock.h"

namespace tandem {

struct BackendServiceOptions {
  std::string observations_path;  // the StandbySyncMemory file
  std::chrono::milliseconds watch_interval{1000};
};

class BackendService {
 public:
  BackendService(BackendServiceOptions options, CmsReplica& replica, const Clock& clock = SystemClock::Instance());
  ~BackendService();

  void Start();
  void Stop();
  void RegisterRoutes(HttpServer& http);

  // One round of the watch, on the caller's thread (the watch thread runs it every
  // interval): records the sync state each reachable primary reports.
  void WatchOnce();

 private:
  void Loop();

  const BackendServiceOptions options_;
  CmsReplica& replica_;
  const Clock& clock_;
  StandbySyncMemory memory_;

  // Touched by WatchOnce only (one caller at a time: the watch thread): an open
  // connection per watched pool, with the DSN it was opened with.
  std::map<std::string, std::pair<std::string, PgConn>> primaries_;

  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace tandem
