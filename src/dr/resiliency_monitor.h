// Resiliency mode: when this pool cannot reach its paired pool P1 for the topology's
// failure detection interval, and P1 is not failed over, this pool accepts P1's users
// with limited function — registration, IM and presence, from the copy of P1's users
// the Backup Service keeps here; persistent changes for them are refused with the
// reason. Once P1 has been reachable again for the failback interval, this pool sends
// them home (their registrations here are dropped; REGISTERs are redirected to P1).
// No admin acts: it is the automatic, unplanned counterpart of `tandem pool failover`,
// which supersedes it (a failed-over pool's users are served here with full function).
//
// "Reachable" means a server of P1 answers GET /dr/serving, which succeeds only when
// that server can use its pool's store: a pool whose back-end is down is not serving.
// Each server of this pool probes on its own, with the same timers, so the servers
// agree within one probe period.
//
// Thread-safety: thread-safe. ServesInResiliency() and generation() are lock-free
// reads for the SIP thread; the probe runs on the monitor's own thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include <nlohmann/json.hpp>

#include "cms/cms_replica.h"
#include "common/metrics.h"
#include "topology/topology.h"

namespace tandem {

// The decision, apart from clocks and sockets (unit-tested on its own).
class ResiliencyState {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  struct Observation {
    std::string partner;            // the paired pool ("" when this pool is not paired)
    bool partner_reachable = false;
    bool partner_failed_over = false;  // an admin failed it over: routing says who serves it
    bool own_users_served_here = true;  // false while this pool is itself failed over
    std::chrono::milliseconds failure_detection{120000};
    std::chrono::milliseconds failback{240000};
  };

  // Takes one probe's outcome at `now`; returns true when resiliency mode started or ended.
  bool Observe(const Observation& observation, TimePoint now);

  bool active() const { return active_; }
  const std::string& partner() const { return partner_; }
  std::optional<TimePoint> unreachable_since() const { return unreachable_since_; }
  std::optional<TimePoint> reachable_since() const { return reachable_since_; }
  std::optional<TimePoint> active_since() const { return active_since_; }

 private:
  std::string partner_;
  bool active_ = false;
  std::optional<TimePoint> unreachable_since_;  // first failed probe of the current outage
  std::optional<TimePoint> reachable_since_;    // first good probe since the last failed one
  std::optional<TimePoint> active_since_;
};

struct ResiliencyOptions {
  std::string own_pool;
  std::string admin_token;
};

class ResiliencyMonitor {
 public:
  // Asks whether a server of `partner` serves, within `timeout`. The default probes
  // GET /dr/serving on each of its servers in turn; tests may substitute one.
  using Probe = std::function<bool(const PoolSpec& partner, std::chrono::milliseconds timeout)>;

  ResiliencyMonitor(ResiliencyOptions options, const CmsReplica& replica, MetricsRegistry& metrics, Probe probe = {});
  ~ResiliencyMonitor();

  void Start();
  void Stop();

  // Whether this pool serves the users homed in `home_pool` in resiliency mode now.
  bool ServesInResiliency(std::string_view home_pool) const;
  // Changes whenever resiliency mode starts or ends: who serves whom changed.
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  // Why a persistent change for a user of `home_pool` is refused now, or nullopt.
  std::optional<std::string> RefusalReason(std::string_view home_pool) const;

  nlohmann::json StatusJson() const;

 private:
  void Run();
  void ProbeOnce();
  // A tenth of the shorter timer, between 50 ms and 1 s: a mode change is late by at
  // most that much.
  static std::chrono::milliseconds ProbePeriodOf(const Topology& topology);

  const ResiliencyOptions options_;
  const CmsReplica& replica_;
  const Probe probe_;
  Gauge* active_gauge_;
  Gauge* reachable_gauge_;
  Counter* transitions_;

  std::atomic<bool> active_{false};
  std::atomic<uint64_t> generation_{0};
  mutable std::mutex mu_;
  ResiliencyState state_;            // guarded by mu_
  std::string served_partner_;       // guarded by mu_: whose users, while active_
  std::optional<bool> last_probe_;   // guarded by mu_
  bool stopping_ = false;            // guarded by mu_
  std::condition_variable wake_;
  std::thread thread_;
};

}  // namespace tandem
