#include "pool/pool_soft_state.h"

#include <algorithm>
#include <bitset>
#include <cstdlib>
#include <iterator>
#include <string_view>

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

// `text` as a JSON string. Bytes that are not UTF-8 become \u00XX: a device's odd
// bytes must neither stop the write-back nor make the row unreadable.
void AppendJsonString(std::string& out, std::string_view text) {
  const bool utf8 = IsValidUtf8(text);
  out.push_back('"');
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (byte < 0x20 || (byte >= 0x80 && !utf8)) {
      fmt::format_to(std::back_inserter(out), "\\u{:04x}", byte);
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
}

// Written directly rather than through an nlohmann DOM, which costs a dozen
// allocations per binding and runs for every REGISTER. Read back by BindingsOf.
SoftStateWrite RegistrationWrite(const std::string& pool, const std::string& aor, const std::vector<Binding>& all) {
  SoftStateWrite write{.row = {pool, kRegistration, aor, RoutingGroupOf(aor), 0, ""}, .remove = all.empty()};
  if (write.remove) return write;
  std::string& out = write.row.payload;
  out.reserve(all.size() * 160);
  out.push_back('[');
  for (const Binding& b : all) {
    if (&b != &all.front()) out.push_back(',');
    out += "{\"call_id\":";
    AppendJsonString(out, b.call_id);
    out += ",\"contact\":";
    AppendJsonString(out, b.contact_uri);
    fmt::format_to(std::back_inserter(out), ",\"cseq\":{},\"exp\":{},\"q\":{},\"src\":{{\"addr\":", b.cseq,
                   b.expires_at_ms, b.q_millis);
    AppendJsonString(out, b.source.address);
    fmt::format_to(std::back_inserter(out), ",\"port\":{},\"proto\":\"{}\"}}}}", b.source.port,
                   b.source.protocol == sip::TransportProtocol::kTcp ? "tcp" : "udp");
    write.row.expires_at_ms = std::max(write.row.expires_at_ms, b.expires_at_ms);
  }
  out.push_back(']');
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

// A subscription's row key: its dialog.
std::string SubscriptionKey(const Subscription& s) { return s.call_id + " " + s.our_tag; }

// Dumped with replacement: a stray byte must not throw on the writer thread.
SoftStateWrite SubscriptionWrite(const std::string& pool, const std::string& key, const Subscription& s,
                                 bool removed) {
  SoftStateWrite write{.row = {pool, kSubscription, key, RoutingGroupOf(s.presentity), s.expires_at_ms, ""},
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
                          .dump(-1, ' ', false, json::error_handler_t::replace);
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
  write.row.payload = records.dump(-1, ' ', false, json::error_handler_t::replace);
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
  bindings_.SetChangeListener([this](const std::string& aor, const std::vector<Binding>&) { NoteUserChanged(aor); });
  subscriptions_.SetChangeListener([this](const Subscription& subscription, bool removed) {
    Queue(Kind::kSubscription, SubscriptionKey(subscription), SubscriptionChange{subscription, removed});
  });
  publications_.SetChangeListener([this](const std::string& aor, const std::vector<PublicationRecord>& all) {
    Queue(Kind::kPublication, aor, all);
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

void PoolSoftState::NoteUserChanged(const std::string& aor) {
  std::lock_guard lock(mu_);
  changed_users_.push_back(aor);
  queued_rows_->Set(static_cast<double>(QueuedLocked() + in_flight_));
  if (QueuedLocked() >= options_.max_batch_rows) wake_.notify_all();
}

void PoolSoftState::Queue(Kind kind, std::string_view key, Change change) {
  std::lock_guard lock(mu_);
  // A row still waiting takes the newer state in place (no new key).
  if (auto waiting = pending_.find(PendingKeyView{kind, key}); waiting != pending_.end()) {
    waiting->second = std::move(change);
  } else {
    pending_.emplace(PendingKey{kind, std::string(key)}, std::move(change));
  }
  queued_rows_->Set(static_cast<double>(QueuedLocked() + in_flight_));
  if (QueuedLocked() >= options_.max_batch_rows) wake_.notify_all();
}

SoftStateWrite PoolSoftState::RowOf(const PendingKey& key, const Change& change) const {
  switch (key.kind) {
    case Kind::kSubscription: {
      const auto& [subscription, removed] = std::get<SubscriptionChange>(change);
      return SubscriptionWrite(options_.pool, key.key, subscription, removed);
    }
    case Kind::kPublication:
      return PublicationWrite(options_.pool, key.key, std::get<std::vector<PublicationRecord>>(change));
  }
  std::abort();  // every kind is handled above
}

Status PoolSoftState::Flush() {
  std::lock_guard flush_lock(flush_mu_);
  return FlushLocked();
}

Status PoolSoftState::FlushLocked() {
  while (true) {
    std::vector<std::string> users;
    std::vector<decltype(pending_)::node_type> batch;
    std::bitset<kRoutingGroups> handed_over;
    {
      std::lock_guard lock(mu_);
      if (QueuedLocked() == 0) return OkStatus();
      size_t take = std::min(changed_users_.size(), options_.max_batch_rows);
      users.assign(std::make_move_iterator(changed_users_.end() - static_cast<ptrdiff_t>(take)),
                   std::make_move_iterator(changed_users_.end()));
      changed_users_.resize(changed_users_.size() - take);
      while (!pending_.empty() && users.size() + batch.size() < options_.max_batch_rows) {
        batch.push_back(pending_.extract(pending_.begin()));
      }
      handed_over = handed_over_;
      in_flight_ = users.size() + batch.size();
    }
    // Serialized here, off the tables' threads and locks.
    std::sort(users.begin(), users.end());
    users.erase(std::unique(users.begin(), users.end()), users.end());
    std::vector<SoftStateWrite> writes;
    writes.reserve(users.size() + batch.size());
    const int64_t now_ms = MillisOf(clock_);
    for (const std::string& aor : users) {
      if (handed_over[RoutingGroupOf(aor)]) continue;
      writes.push_back(RegistrationWrite(options_.pool, aor, bindings_.Lookup(aor, now_ms)));
    }
    for (const auto& node : batch) writes.push_back(RowOf(node.key(), node.mapped()));
    auto written = writes.empty() ? OkStatus() : store_.WriteSoftState(writes);
    std::lock_guard lock(mu_);
    in_flight_ = 0;
    if (!written) {
      write_failures_->Increment();
      // Put the batch back (registrations are read from the table again; other rows
      // only if no newer state of the same row was queued meanwhile).
      changed_users_.insert(changed_users_.end(), std::make_move_iterator(users.begin()),
                            std::make_move_iterator(users.end()));
      for (auto& node : batch) pending_.insert(std::move(node));
    } else if (!writes.empty()) {
      batches_written_->Increment();
      rows_written_->Increment(writes.size());
    }
    // Queued or being written: 0 means everything so far is in the store.
    queued_rows_->Set(static_cast<double>(QueuedLocked()));
    if (!written) return written;
  }
}

void PoolSoftState::Loop() {
  auto next_cleanup = std::chrono::steady_clock::now() + options_.cleanup_interval;
  std::unique_lock lock(mu_);
  while (!stopping_) {
    wake_.wait_for(lock, options_.flush_interval,
                   [this] { return stopping_ || QueuedLocked() >= options_.max_batch_rows; });
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
  std::bitset<kRoutingGroups> lost, owned;
  for (int group = 0; group < kRoutingGroups; ++group) {
    bool had = before.OwnerOf(group) == self;
    bool has = after.OwnerOf(group) == self;
    if (has && !had) gained.push_back(group);
    lost[group] = had && !has;
    owned[group] = has;
  }
  cleans_expired_ = after.OwnerOf(0) == self;
  {
    std::lock_guard lock(mu_);
    handed_over_ &= ~owned;
  }
  if (lost.any()) {
    // What this server holds of those groups goes to the store first, for their new
    // owners; from then on their users' changes are not written back from here. No
    // batch runs in between (one could read a user already forgotten as unregistered).
    std::lock_guard flush_lock(flush_mu_);
    if (auto flushed = FlushLocked(); !flushed) {
      spdlog::warn("pool: could not write back the soft state of the routing groups handed over: {}",
                   flushed.error().message);
    }
    {
      std::lock_guard lock(mu_);
      handed_over_ |= lost;
    }
    // Only memory: the rows stay in the store for the new owners.
    auto is_lost = [&](std::string_view aor) { return lost[RoutingGroupOf(aor)]; };
    size_t users = bindings_.RemoveUsersIf(is_lost);
    subscriptions_.RemoveIf([&](const std::string& presentity) { return is_lost(presentity); });
    publications_.RemoveIf([&](const std::string& aor) { return is_lost(aor); });
    spdlog::info("pool: handed over {} routing groups ({} registered users) to other servers", lost.count(), users);
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
