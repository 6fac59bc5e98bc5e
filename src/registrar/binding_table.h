// The registrar's location service: for every address of record, the contacts its
// devices registered (RFC 3261 §10), each with q-value, expiry, Call-ID and CSeq.
// Soft state: held in memory by the server that owns the user.
//
// Thread-safety: thread-safe (one mutex); lookups copy the bindings out.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/error.h"
#include "transport/sip_transport.h"

namespace tandem {

struct Binding {
  std::string contact_uri;  // the Contact URI, as the device sent it
  int q_millis = 1000;      // q-value in thousandths; devices are tried highest first
  int64_t expires_at_ms = 0;
  std::string call_id;
  uint32_t cseq = 0;
  sip::MessageSource source;  // where the REGISTER came from: requests to the device go back that way
};

// One change a REGISTER asks for: set (expires > 0) or remove (expires == 0).
struct BindingChange {
  std::string contact_uri;
  int q_millis = 1000;
  uint32_t expires_seconds = 0;
};

class BindingTable {
 public:
  explicit BindingTable(size_t max_contacts_per_user = 32) : max_contacts_per_user_(max_contacts_per_user) {}

  // Applies one REGISTER for `aor` atomically (all changes or none):
  //  - kFailedPrecondition if a binding has the same Call-ID and a CSeq not lower
  //    than `cseq` (an out-of-order or replayed REGISTER: RFC 3261 §10.3 step 7);
  //  - kInvalidArgument if the user would exceed the contact limit.
  // `remove_all` is "Contact: *". Returns the bindings after the update.
  Result<std::vector<Binding>> Apply(const std::string& aor, const std::vector<BindingChange>& changes,
                                     bool remove_all, const std::string& call_id, uint32_t cseq,
                                     const sip::MessageSource& source, int64_t now_ms);

  // Unexpired bindings of `aor`, highest q first.
  std::vector<Binding> Lookup(const std::string& aor, int64_t now_ms) const;

  // Drops expired bindings; returns how many.
  size_t SweepExpired(int64_t now_ms);

  size_t user_count() const;
  size_t binding_count() const;

 private:
  const size_t max_contacts_per_user_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::vector<Binding>> bindings_;  // guarded by mu_
  size_t binding_count_ = 0;                                         // guarded by mu_
};

}  // namespace tandem
