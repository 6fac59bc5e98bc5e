#include "dr/resiliency_monitor.h"

#include <algorithm>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "admin/peer_client.h"
#include "common/clock.h"

namespace tandem {

bool ResiliencyState::Observe(const Observation& observation, TimePoint now) {
  const bool was_active = active_;
  if (observation.partner != partner_) {
    // Pairing changed (a published topology): start over, trusting nothing observed.
    partner_ = observation.partner;
    active_ = false;
    unreachable_since_.reset();
    reachable_since_.reset();
  }
  if (observation.partner_reachable) {
    unreachable_since_.reset();
    if (!reachable_since_) reachable_since_ = now;
  } else {
    reachable_since_.reset();
    if (!unreachable_since_) unreachable_since_ = now;
  }
  // An admin's failover decides who serves the partner's users; and a pool that is
  // failed over itself serves nobody's users, its partner's least.
  const bool eligible =
      !partner_.empty() && !observation.partner_failed_over && observation.own_users_served_here;
  if (!eligible) {
    active_ = false;
  } else if (!active_ && unreachable_since_ && now - *unreachable_since_ >= observation.failure_detection) {
    active_ = true;
  } else if (active_ && reachable_since_ && now - *reachable_since_ >= observation.failback) {
    active_ = false;
  }
  if (active_ && !was_active) active_since_ = now;
  if (!active_) active_since_.reset();
  return active_ != was_active;
}

namespace {

bool ProbeServing(const PoolSpec& partner, std::chrono::milliseconds timeout, const std::string& token) {
  for (const ServerSpec& server : partner.servers) {
    auto answer = HttpCall("GET", AdminUrlOf(server, "/dr/serving"), "", {.token = token, .timeout = timeout});
    if (answer && answer->status == 200) return true;
  }
  return false;
}

double SecondsSince(std::optional<std::chrono::steady_clock::time_point> since,
                    std::chrono::steady_clock::time_point now) {
  return since ? std::chrono::duration<double>(now - *since).count() : 0.0;
}

}  // namespace

ResiliencyMonitor::ResiliencyMonitor(ResiliencyOptions options, const CmsReplica& replica, MetricsRegistry& metrics,
                                     Probe probe)
    : options_(std::move(options)),
      replica_(replica),
      probe_(probe ? std::move(probe)
                   : Probe([token = options_.admin_token](const PoolSpec& partner, std::chrono::milliseconds timeout) {
                       return ProbeServing(partner, timeout, token);
                     })),
      active_gauge_(metrics.GetGauge("tandem_resiliency_mode",
                                     "1 while this server serves its paired pool's users in resiliency mode")),
      reachable_gauge_(metrics.GetGauge("tandem_resiliency_partner_reachable",
                                        "1 when the paired pool answered the last probe")),
      transitions_(metrics.GetCounter("tandem_resiliency_transitions_total",
                                      "times resiliency mode started or ended on this server")) {}

ResiliencyMonitor::~ResiliencyMonitor() { Stop(); }

void ResiliencyMonitor::Start() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] { Run(); });
}

void ResiliencyMonitor::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::chrono::milliseconds ResiliencyMonitor::ProbePeriodOf(const Topology& topology) {
  auto shorter = std::min(topology.failure_detection_interval, topology.failback_interval);
  return std::clamp(shorter / 10, std::chrono::milliseconds(50), std::chrono::milliseconds(1000));
}

void ResiliencyMonitor::Run() {
  while (true) {
    ProbeOnce();
    auto period = ProbePeriodOf(*replica_.Current().topology);
    std::unique_lock lock(mu_);
    if (wake_.wait_for(lock, period, [this] { return stopping_; })) return;
  }
}

void ResiliencyMonitor::ProbeOnce() {
  auto snapshot = replica_.Current();
  const Topology& topology = *snapshot.topology;
  ResiliencyState::Observation observation{.failure_detection = topology.failure_detection_interval,
                                           .failback = topology.failback_interval};
  if (const PoolSpec* partner = topology.BackupPoolOf(options_.own_pool)) {
    observation.partner = partner->fqdn;
    observation.partner_failed_over = snapshot.document->ServingPoolOf(partner->fqdn) != partner->fqdn;
    observation.own_users_served_here = snapshot.document->ServingPoolOf(options_.own_pool) == options_.own_pool;
    // A hung partner server costs the whole timeout: keep it near one probe period.
    auto timeout = std::max(ProbePeriodOf(topology), std::chrono::milliseconds(500));
    observation.partner_reachable = probe_(*partner, timeout);
  }
  auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mu_);
  last_probe_ = observation.partner.empty() ? std::nullopt : std::optional<bool>(observation.partner_reachable);
  reachable_gauge_->Set(observation.partner_reachable ? 1 : 0);
  if (!state_.Observe(observation, now)) return;
  transitions_->Increment();
  active_gauge_->Set(state_.active() ? 1 : 0);
  if (state_.active()) {
    served_partner_ = state_.partner();
    spdlog::warn("resiliency: pool {} has been unreachable for {:.1f} s and is not failed over: pool {} now serves "
                 "its users with limited function (registration, IM, presence; persistent changes refused)",
                 state_.partner(), SecondsSince(state_.unreachable_since(), now), options_.own_pool);
  } else if (!served_partner_.empty()) {
    spdlog::warn("resiliency: pool {} {}: its users go home (their registrations here are dropped)", served_partner_,
                 observation.partner_failed_over ? "was failed over by an admin"
                                                 : fmt::format("has been reachable for {:.1f} s",
                                                               SecondsSince(state_.reachable_since(), now)));
  }
  active_.store(state_.active(), std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_acq_rel);
}

bool ResiliencyMonitor::ServesInResiliency(std::string_view home_pool) const {
  if (!active_.load(std::memory_order_acquire)) return false;
  std::lock_guard lock(mu_);
  return state_.active() && served_partner_ == home_pool;
}

std::optional<std::string> ResiliencyMonitor::RefusalReason(std::string_view home_pool) const {
  if (!ServesInResiliency(home_pool)) return std::nullopt;
  return fmt::format(
      "pool {} is unreachable and pool {} serves its users in resiliency mode (registration, IM and presence "
      "only); persistent changes wait until pool {} is back, or an admin fails it over "
      "(tandem pool failover --pool {} --disaster)",
      home_pool, options_.own_pool, home_pool, home_pool);
}

nlohmann::json ResiliencyMonitor::StatusJson() const {
  auto snapshot = replica_.Current();
  auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mu_);
  nlohmann::json status{
      {"partner", state_.partner().empty() ? nlohmann::json(nullptr) : nlohmann::json(state_.partner())},
      {"mode", state_.active() ? "resiliency" : "normal"},
      {"partner_reachable", last_probe_ ? nlohmann::json(*last_probe_) : nlohmann::json(nullptr)},
      {"unreachable_for_seconds", SecondsSince(state_.unreachable_since(), now)},
      {"reachable_for_seconds", SecondsSince(state_.reachable_since(), now)},
      {"failure_detection_seconds",
       std::chrono::duration<double>(snapshot.topology->failure_detection_interval).count()},
      {"failback_seconds", std::chrono::duration<double>(snapshot.topology->failback_interval).count()}};
  if (auto since = state_.active_since()) {
    status["active_since_unix_ms"] =
        NowUnixMillis() - std::chrono::duration_cast<std::chrono::milliseconds>(now - *since).count();
  }
  return status;
}

}  // namespace tandem
