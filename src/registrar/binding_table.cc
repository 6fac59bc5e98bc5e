#include "registrar/binding_table.h"

#include <algorithm>

#include <fmt/format.h>

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
  std::stable_sort(bindings.begin(), bindings.end(),
                   [](const Binding& a, const Binding& b) { return a.q_millis > b.q_millis; });
}

}  // namespace

Result<std::vector<Binding>> BindingTable::Apply(const std::string& aor, const std::vector<BindingChange>& changes,
                                                 bool remove_all, const std::string& call_id, uint32_t cseq,
                                                 const sip::MessageSource& source, int64_t now_ms) {
  std::lock_guard lock(mu_);
  auto found = bindings_.find(aor);
  std::vector<Binding> current = found == bindings_.end() ? std::vector<Binding>() : found->second;
  std::erase_if(current, [&](const Binding& b) { return b.expires_at_ms <= now_ms; });

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
  if (current.empty()) {
    if (found != bindings_.end()) bindings_.erase(found);
    return current;
  }
  bindings_[aor] = current;
  return current;
}

std::vector<Binding> BindingTable::Lookup(const std::string& aor, int64_t now_ms) const {
  std::lock_guard lock(mu_);
  auto found = bindings_.find(aor);
  if (found == bindings_.end()) return {};
  std::vector<Binding> live;
  for (const Binding& binding : found->second) {
    if (binding.expires_at_ms > now_ms) live.push_back(binding);
  }
  return live;
}

size_t BindingTable::SweepExpired(int64_t now_ms) {
  std::lock_guard lock(mu_);
  size_t removed = 0;
  for (auto it = bindings_.begin(); it != bindings_.end();) {
    removed += std::erase_if(it->second, [&](const Binding& b) { return b.expires_at_ms <= now_ms; });
    it = it->second.empty() ? bindings_.erase(it) : std::next(it);
  }
  binding_count_ -= removed;
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
