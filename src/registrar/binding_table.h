// The registrar's location service: for every address of record, the contacts its
// devices registered (RFC 3261 §10), each with q-value, expiry, Call-ID and CSeq.
// Soft state: held in memory by the server that owns the user.
//
// Thread-safety: thread-safe (one mutex); lookups copy the bindings out.
#pragma once

#include <cstdint>
#include <functional>
#include <memory_resource>
#include <mutex>
#include <string>
#include <string_view>
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
  explicit BindingTable(size_t max_contacts_per_user = 32);
  ~BindingTable();
  BindingTable(const BindingTable&) = delete;
  BindingTable& operator=(const BindingTable&) = delete;

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

  // Pool takeover. The listener hears every change Apply makes (the AOR's bindings
  // afterwards; empty when none are left), under the table's lock, so it must not
  // call back into the table. Set it before the table is shared.
  using ChangeListener = std::function<void(const std::string& aor, const std::vector<Binding>& bindings)>;
  void SetChangeListener(ChangeListener listener) { listener_ = std::move(listener); }
  // Replaces the bindings of `aor` with ones loaded from the store (not heard).
  void Restore(const std::string& aor, const std::vector<Binding>& bindings);
  // Forgets the users another server now owns (not heard); returns how many.
  size_t RemoveUsersIf(const std::function<bool(std::string_view aor)>& predicate);

  size_t user_count() const;
  size_t binding_count() const;

 private:
  // A binding as stored: its strings live in pool_ (see below).
  struct StoredBinding {
    std::pmr::string contact_uri;
    std::pmr::string call_id;
    std::pmr::string address;
    int64_t expires_at_ms = 0;
    uint64_t connection_id = 0;
    uint32_t cseq = 0;
    int32_t q_millis = 1000;
    uint16_t port = 0;
    sip::TransportProtocol protocol = sip::TransportProtocol::kUdp;
  };
  using StoredBindings = std::pmr::vector<StoredBinding>;
  struct KeyHash {
    using is_transparent = void;
    size_t operator()(std::string_view key) const { return std::hash<std::string_view>{}(key); }
  };
  struct KeyEqual {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const { return a == b; }
  };

  Binding ToBinding(const StoredBinding& stored) const;
  void Store(const std::vector<Binding>& bindings, StoredBindings* out);

  const size_t max_contacts_per_user_;
  mutable std::mutex mu_;
  // Bindings live for hours, while the transactions that create them are gone in
  // seconds: on one heap, a few live bindings pin every page a burst of transactions
  // touched (resident memory several times the live data). So the table allocates
  // from its own pool, fed with whole pages mapped for it alone. Guarded by mu_.
  std::unique_ptr<std::pmr::memory_resource> pages_;
  std::pmr::unsynchronized_pool_resource pool_;
  std::pmr::unordered_map<std::pmr::string, StoredBindings, KeyHash, KeyEqual> bindings_;  // guarded by mu_
  size_t binding_count_ = 0;                                              // guarded by mu_
  ChangeListener listener_;
};

}  // namespace tandem
