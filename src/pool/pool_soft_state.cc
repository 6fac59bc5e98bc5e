#include "pool/pool_soft_state.h"

#include <algorithm>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace tandem {

using nlohmann::json;

namespace {

constexpr char kRegistration[] = "registration";
constexpr char kSubscription[] = "subscription";
constexpr char kPublication[] = "publication";

int64_t MillisOf(const Clock& clock) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock.Now().time_since_epoch()).count();
}

json SourceJson(const sip::MessageSource& source) {
  return {{"proto", source.protocol == sip::TransportProtocol::kTcp ? "tcp" : "udp"},
          {"addr", source.address},
          {"port", source.port}};
}

// A TCP connection id means nothing to another process: the new owner reconnects.
sip::MessageSource SourceOf(const json& j) {
  return sip::MessageSource{.protocol = j.value("proto", "udp") == "tcp" ? sip::TransportProtocol::kTcp
                                                                          : sip::TransportProtocol::kUdp,
                            .address = j.value("addr", ""),
                            .port = j.value<uint16_t>("port", 0),
                            .connection_id = 0};
}

SoftStateWrite RegistrationWrite(const std::string& pool, const std::string& aor, const std::vector<Binding>& all) {
  SoftStateWrite write{.row = {pool, kRegistration, aor, RoutingGroupOf(aor), 0, ""}, .remove = all.empty()};
  if (write.remove) return write;
  json bindings = json::array();
  for (const Binding& b : all) {
    bindings.push_back({{"contact", b.contact_uri},
                        {"q", b.q_millis},
                        {"exp", b.expires_at_ms},
                        {"call_id", b.call_id},
                        {"cseq", b.cseq},
                        {"src", SourceJson(b.source)}});
    write.row.expires_at_ms = std::max(write.row.expires_at_ms, b.expires_at_ms);
  }
  write.row.payload = bindings.dump();
  return write;
}

std::vector<Binding> BindingsOf(const json& payload) {
  std::vector<Binding> out;
  for (const json& b : payload) {
    out.push_back(Binding{b.value("contact", ""), b.value("q", 1000), b.value<int64_t>("exp", 0),
                          b.value("call_id", ""), b.value<uint32_t>("cseq", 0),
                          SourceOf(b.value("src", json::object()))});
  }
  return out;
}

SoftStateWrite SubscriptionWrite(const std::string& pool, const Subscription& s, bool removed) {
  SoftStateWrite write{.row = {pool, kSubscription, s.call_id + " " + s.our_tag, RoutingGroupOf(s.presentity),
                               s.expires_at_ms, ""},
                       .remove = removed};
  if (removed) return write;
  write.row.payload = json{{"call_id", s.call_id},
                           {"tag", s.our_tag},
                           {"presentity", s.presentity},
                           {"watcher", s.watcher},
                           {"from", s.from_header},
                           {"to", s.to_header},
                           {"contact", s.watcher_contact},
                           {"src", SourceJson(s.source)},
                           {"cseq", s.next_cseq},
                           {"exp", s.expires_at_ms}}
                          .dump();
  return write;
}

Subscription SubscriptionOf(const json& j) {
  return Subscription{.call_id = j.value("call_id", ""),
                      .our_tag = j.value("tag", ""),
                      .presentity = j.value("presentity", ""),
                      .watcher = j.value("watcher", ""),
                      .from_header = j.value("from", ""),
                      .to_header = j.value("to", ""),
                      .watcher_contact = j.value("contact", ""),
                      .source = SourceOf(j.value("src", json::object())),
                      .next_cseq = j.value<uint32_t>("cseq", 1),
                      .expires_at_ms = j.value<int64_t>("exp", 0)};
}

SoftStateWrite PublicationWrite(const std::string& pool, const std::string& aor,
                                const std::vector<PublicationRecord>& all) {
  SoftStateWrite write{.row = {pool, kPublication, aor, RoutingGroupOf(aor), 0, ""}, .remove = all.empty()};
  if (write.remove) return write;
  json records = json::array();
  for (const PublicationRecord& p : all) {
    records.push_back({{"etag", p.etag},
                       {"open", p.state.basic == BasicStatus::kOpen},
                       {"note", p.state.note},
                       {"exp", p.expires_at_ms},
                       {"updated", p.updated_ms}});
    write.row.expires_at_ms = std::max(write.row.expires_at_ms, p.expires_at_ms);
  }
  write.row.payload = records.dump();
  return write;
}

std::vector<PublicationRecord> PublicationsOf(const json& payload) {
  std::vector<PublicationRecord> out;
  for (const json& p : payload) {
    out.push_back(PublicationRecord{
        p.value("etag", ""),
        PresenceState{p.value("open", false) ? BasicStatus::kOpen : BasicStatus::kClosed, p.value("note", "")},
        p.value<int64_t>("exp", 0), p.value<int64_t>("updated", 0)});
  }
  return out;
}

}  // namespace

PoolSoftState::PoolSoftState(SoftStateOptions options, Store& store, BindingTable& bindings,
                             PublicationStore& publications, SubscriptionTable& subscriptions,
                             MetricsRegistry& metrics, const Clock& clock)
    : options_(std::move(options)),
      store_(store),
      bindings_(bindings),
      publications_(publications),
      subscriptions_(subscriptions),
      clock_(clock),
      rows_written_(metrics.GetCounter("tandem_pool_soft_state_rows_written_total",
                                       "soft-state rows written back to the pool's store")),
      batches_written_(metrics.GetCounter("tandem_pool_soft_state_batches_total",
                                          "soft-state write-back transactions")),
      write_failures_(metrics.GetCounter("tandem_pool_soft_state_write_failures_total",
                                         "soft-state batches the store refused (retried)")),
      rows_loaded_(metrics.GetCounter("tandem_pool_soft_state_rows_loaded_total",
                                      "soft-state rows loaded for routing groups this server took over")),
      queued_rows_(metrics.GetGauge("tandem_pool_soft_state_queued_rows", "soft-state rows waiting to be written")) {}

PoolSoftState::~PoolSoftState() { Stop(); }

void PoolSoftState::Start() {
  const std::string& pool = options_.pool;
  bindings_.SetChangeListener([this, pool](const std::string& aor, const std::vector<Binding>& all) {
    Queue(RegistrationWrite(pool, aor, all));
  });
  subscriptions_.SetChangeListener([this, pool](const Subscription& subscription, bool removed) {
    Queue(SubscriptionWrite(pool, subscription, removed));
  });
  publications_.SetChangeListener([this, pool](const std::string& aor, const std::vector<PublicationRecord>& all) {
    Queue(PublicationWrite(pool, aor, all));
  });
  thread_ = std::thread([this] { Loop(); });
}

void PoolSoftState::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (auto flushed = Flush(); !flushed) {
    spdlog::warn("pool: could not write back the last soft state: {}", flushed.error().message);
  }
}

void PoolSoftState::Queue(SoftStateWrite write) {
  std::string id = write.row.kind + " " + write.row.key;
  std::lock_guard lock(mu_);
  pending_.insert_or_assign(std::move(id), std::move(write));
  queued_rows_->Set(static_cast<double>(pending_.size() + in_flight_));
  if (pending_.size() >= options_.max_batch_rows) wake_.notify_all();
}

Status PoolSoftState::Flush() {
  std::lock_guard flush_lock(flush_mu_);
  while (true) {
    std::vector<std::pair<std::string, SoftStateWrite>> batch;
    {
      std::lock_guard lock(mu_);
      if (pending_.empty()) return OkStatus();
      batch.reserve(std::min(pending_.size(), options_.max_batch_rows));
      for (auto it = pending_.begin(); it != pending_.end() && batch.size() < options_.max_batch_rows;) {
        batch.emplace_back(it->first, std::move(it->second));
        it = pending_.erase(it);
      }
      in_flight_ = batch.size();
    }
    std::vector<SoftStateWrite> writes;
    writes.reserve(batch.size());
    for (auto& [id, write] : batch) writes.push_back(write);
    auto written = store_.WriteSoftState(writes);
    std::lock_guard lock(mu_);
    in_flight_ = 0;
    if (!written) {
      write_failures_->Increment();
      // Put the batch back unless a newer state of the same row was queued meanwhile.
      for (auto& [id, write] : batch) pending_.try_emplace(std::move(id), std::move(write));
    } else {
      batches_written_->Increment();
      rows_written_->Increment(writes.size());
    }
    // Queued or being written: 0 means everything so far is in the store.
    queued_rows_->Set(static_cast<double>(pending_.size()));
    if (!written) return written;
  }
}

void PoolSoftState::Loop() {
  auto next_cleanup = std::chrono::steady_clock::now() + options_.cleanup_interval;
  std::unique_lock lock(mu_);
  while (!stopping_) {
    wake_.wait_for(lock, options_.flush_interval,
                   [this] { return stopping_ || pending_.size() >= options_.max_batch_rows; });
    if (stopping_) break;
    lock.unlock();
    if (auto flushed = Flush(); !flushed) {
      spdlog::warn("pool: soft-state write-back failed (will retry): {}", flushed.error().message);
    }
    if (cleans_expired_ && std::chrono::steady_clock::now() >= next_cleanup) {
      next_cleanup = std::chrono::steady_clock::now() + options_.cleanup_interval;
      auto removed = store_.DeleteExpiredSoftState(options_.pool, MillisOf(clock_));
      if (!removed) spdlog::warn("pool: cannot delete expired soft state: {}", removed.error().message);
    }
    lock.lock();
  }
}

Status PoolSoftState::OnOwnershipChanged(const RoutingGroupMap& before, const RoutingGroupMap& after) {
  const std::string& self = options_.server_id;
  std::vector<int> gained;
  std::vector<bool> lost(kRoutingGroups, false);
  bool loses_any = false;
  for (int group = 0; group < kRoutingGroups; ++group) {
    bool had = before.OwnerOf(group) == self;
    bool has = after.OwnerOf(group) == self;
    if (has && !had) gained.push_back(group);
    if (had && !has) lost[group] = loses_any = true;
  }
  cleans_expired_ = after.OwnerOf(0) == self;
  if (loses_any) {
    // Only memory: the rows stay in the store for the new owners.
    auto is_lost = [&](std::string_view aor) { return lost[RoutingGroupOf(aor)]; };
    size_t users = bindings_.RemoveUsersIf(is_lost);
    subscriptions_.RemoveIf([&](const std::string& presentity) { return is_lost(presentity); });
    publications_.RemoveIf([&](const std::string& aor) { return is_lost(aor); });
    spdlog::info("pool: handed over {} routing groups ({} registered users) to other servers",
                 std::count(lost.begin(), lost.end(), true), users);
  }
  if (gained.empty()) return OkStatus();
  return LoadGroups(gained);
}

Status PoolSoftState::LoadGroups(const std::vector<int>& groups) {
  auto started = std::chrono::steady_clock::now();
  auto rows = store_.LoadSoftState(options_.pool, groups, MillisOf(clock_));
  if (!rows) {
    return MakeError(rows.error().code,
                     fmt::format("cannot load the soft state of {} routing groups: {}", groups.size(),
                                 rows.error().message));
  }
  size_t registrations = 0, subscriptions = 0, publications = 0, malformed = 0;
  for (const SoftStateRow& row : *rows) {
    json payload = json::parse(row.payload, nullptr, /*allow_exceptions=*/false);
    if (payload.is_discarded()) {
      ++malformed;
      continue;
    }
    try {
      if (row.kind == kRegistration && payload.is_array()) {
        bindings_.Restore(row.key, BindingsOf(payload));
        ++registrations;
      } else if (row.kind == kSubscription && payload.is_object()) {
        subscriptions_.Restore(SubscriptionOf(payload));
        ++subscriptions;
      } else if (row.kind == kPublication && payload.is_array()) {
        publications_.Restore(row.key, PublicationsOf(payload));
        ++publications;
      } else {
        ++malformed;
      }
    } catch (const json::exception&) {
      ++malformed;  // a field of the wrong type: the row is skipped, the rest loads
    }
  }
  rows_loaded_->Increment(rows->size() - malformed);
  spdlog::info("pool: took over {} routing groups: {} registrations, {} subscriptions, {} publications in {} ms{}",
               groups.size(), registrations, subscriptions, publications,
               std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started)
                   .count(),
               malformed > 0 ? fmt::format(" ({} malformed rows skipped)", malformed) : "");
  return OkStatus();
}

json PoolSoftState::StatusJson() const {
  std::lock_guard lock(mu_);
  return {{"queued_rows", pending_.size() + in_flight_}};
}

}  // namespace tandem
