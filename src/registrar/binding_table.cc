#include "registrar/binding_table.h"

#include <algorithm>

#include <fmt/format.h>

#include "common/page_resource.h"

namespace tandem {

namespace {

// Contact URIs compare by RFC 3261 §19.1.4 rules in principle; devices resend the
// same text, so an exact comparison after lower-casing the scheme and host is the
// practical rule most registrars apply.
bool SameContact(const std::string& a, const std::string& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

void SortByQ(std::vector<Binding>& bindings) {
  // stable_sort takes a temporary buffer even for one element, and most users
  // register one device.
  if (bindings.size() < 2) return;
  std::stable_sort(bindings.begin(), bindings.end(),
                   [](const Binding& a, const Binding& b) { return a.q_millis > b.q_millis; });
}

}  // namespace

BindingTable::BindingTable(size_t max_contacts_per_user)
    : max_contacts_per_user_(max_contacts_per_user),
      pages_(std::make_unique<PageResource>()),
      pool_(pages_.get()),
      bindings_(&pool_) {}

BindingTable::~BindingTable() = default;

Binding BindingTable::ToBinding(const StoredBinding& stored) const {
  return Binding{std::string(stored.contact_uri),
                 stored.q_millis,
                 stored.expires_at_ms,
                 std::string(stored.call_id),
                 stored.cseq,
                 sip::MessageSource{.protocol = stored.protocol,
                                    .address = std::string(stored.address),
                                    .port = stored.port,
                                    .connection_id = stored.connection_id}};
}

void BindingTable::Store(const std::vector<Binding>& bindings, StoredBindings* out) {
  out->clear();
  out->reserve(bindings.size());
  for (const Binding& b : bindings) {
    out->push_back(StoredBinding{.contact_uri = std::pmr::string(b.contact_uri, &pool_),
                                 .call_id = std::pmr::string(b.call_id, &pool_),
                                 .address = std::pmr::string(b.source.address, &pool_),
                                 .expires_at_ms = b.expires_at_ms,
                                 .connection_id = b.source.connection_id,
                                 .cseq = b.cseq,
                                 .q_millis = b.q_millis,
                                 .port = b.source.port,
                                 .protocol = b.source.protocol});
  }
}

Result<std::vector<Binding>> BindingTable::Apply(const std::string& aor, const std::vector<BindingChange>& changes,
                                                 bool remove_all, const std::string& call_id, uint32_t cseq,
                                                 const sip::MessageSource& source, int64_t now_ms) {
  std::lock_guard lock(mu_);
  auto found = bindings_.find(std::string_view(aor));
  std::vector<Binding> current;
  if (found != bindings_.end()) {
    current.reserve(found->second.size() + changes.size());
    for (const StoredBinding& stored : found->second) {
      if (stored.expires_at_ms > now_ms) current.push_back(ToBinding(stored));
    }
  }

  for (const Binding& binding : current) {
    if (binding.call_id == call_id && binding.cseq >= cseq &&
        (remove_all || std::any_of(changes.begin(), changes.end(), [&](const BindingChange& change) {
           return SameContact(change.contact_uri, binding.contact_uri);
         }))) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       fmt::format("CSeq {} is not higher than {} already registered for this Call-ID", cseq, binding.cseq));
    }
  }

  if (remove_all) {
    current.clear();
  } else {
    for (const BindingChange& change : changes) {
      auto existing = std::find_if(current.begin(), current.end(),
                                   [&](const Binding& b) { return SameContact(b.contact_uri, change.contact_uri); });
      if (change.expires_seconds == 0) {
        if (existing != current.end()) current.erase(existing);
        continue;
      }
      Binding updated{change.contact_uri, change.q_millis,
                      now_ms + static_cast<int64_t>(change.expires_seconds) * 1000, call_id, cseq, source};
      if (existing != current.end()) {
        *existing = std::move(updated);
      } else {
        current.push_back(std::move(updated));
      }
    }
    if (current.size() > max_contacts_per_user_) {
      return MakeError(ErrorCode::kInvalidArgument,
                       fmt::format("at most {} contacts may be registered per user", max_contacts_per_user_));
    }
  }
  SortByQ(current);

  size_t before = found == bindings_.end() ? 0 : found->second.size();
  binding_count_ = binding_count_ - before + current.size();
  if (listener_) listener_(aor, current);
  if (current.empty()) {
    if (found != bindings_.end()) bindings_.erase(found);
    return current;
  }
  if (found == bindings_.end()) {
    found = bindings_.emplace(std::pmr::string(aor, &pool_), StoredBindings(&pool_)).first;
  }
  Store(current, &found->second);
  return current;
}

std::vector<Binding> BindingTable::Lookup(const std::string& aor, int64_t now_ms) const {
  std::lock_guard lock(mu_);
  auto found = bindings_.find(std::string_view(aor));
  if (found == bindings_.end()) return {};
  std::vector<Binding> live;
  for (const StoredBinding& binding : found->second) {
    if (binding.expires_at_ms > now_ms) live.push_back(ToBinding(binding));
  }
  return live;
}

size_t BindingTable::SweepExpired(int64_t now_ms) {
  std::lock_guard lock(mu_);
  size_t removed = 0;
  for (auto it = bindings_.begin(); it != bindings_.end();) {
    removed += std::erase_if(it->second, [&](const StoredBinding& b) { return b.expires_at_ms <= now_ms; });
    it = it->second.empty() ? bindings_.erase(it) : std::next(it);
  }
  binding_count_ -= removed;
  return removed;
}

void BindingTable::Restore(const std::string& aor, const std::vector<Binding>& bindings) {
  std::lock_guard lock(mu_);
  auto found = bindings_.find(std::string_view(aor));
  size_t before = found == bindings_.end() ? 0 : found->second.size();
  binding_count_ = binding_count_ - before + bindings.size();
  if (bindings.empty()) {
    if (found != bindings_.end()) bindings_.erase(found);
    return;
  }
  if (found == bindings_.end()) {
    found = bindings_.emplace(std::pmr::string(aor, &pool_), StoredBindings(&pool_)).first;
  }
  std::vector<Binding> sorted = bindings;
  SortByQ(sorted);
  Store(sorted, &found->second);
}

size_t BindingTable::RemoveUsersIf(const std::function<bool(std::string_view aor)>& predicate) {
  std::lock_guard lock(mu_);
  size_t removed = 0;
  for (auto it = bindings_.begin(); it != bindings_.end();) {
    if (!predicate(it->first)) {
      ++it;
      continue;
    }
    binding_count_ -= it->second.size();
    it = bindings_.erase(it);
    ++removed;
  }
  return removed;
}

size_t BindingTable::user_count() const {
  std::lock_guard lock(mu_);
  return bindings_.size();
}

size_t BindingTable::binding_count() const {
  std::lock_guard lock(mu_);
  return binding_count_;
}

}  // namespace tandem
