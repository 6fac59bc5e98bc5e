// The registrar (RFC 3261 §10.3): authenticates REGISTER requests with digest
// (MD5 or SHA-256), validates the address of record against the provisioned users,
// and adds, refreshes and removes bindings in the BindingTable, answering with the
// current bindings. Also answers 423 (Min-Expires), 420 (unknown Require), 500
// (out-of-order CSeq), 400 (bad Contact: *).
//
// Thread-safety: HandleRegister is called on one thread (the SIP thread); the
// registrar's own state is the Date text of the current second, beyond what its
// (thread-safe) collaborators hold. All borrowed objects must outlive it.
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "auth/authenticator.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "registrar/binding_table.h"
#include "store/store.h"
#include "transport/sip_transport.h"

namespace tandem {

struct RegistrarOptions {
  std::string domain;  // the SIP domain; also the digest realm
  uint32_t default_expires = 3600;
  uint32_t min_expires = 60;
  uint32_t max_expires = 86400;
  bool authenticate = true;  // false: provisioned users register without digest (labs, benchmarks)
};

class Registrar {
 public:
  Registrar(RegistrarOptions options, BindingTable& bindings, DigestAuthenticator& authenticator, UserLookup users,
            MetricsRegistry& metrics, const Clock& clock = SystemClock::Instance());

  void HandleRegister(const std::shared_ptr<sip::ServerTransaction>& transaction);

 private:
  bool Authenticate(const std::shared_ptr<sip::ServerTransaction>& transaction, const std::string& user,
                    const std::string& domain, const std::string& aor);
  void Reply(const std::shared_ptr<sip::ServerTransaction>& transaction, int code, std::string_view reason,
             const std::vector<std::pair<std::string, std::string>>& headers = {});
  // Counts the response by status code and sends it.
  void Send(const std::shared_ptr<sip::ServerTransaction>& transaction, sip::SipMessage response);

  const RegistrarOptions options_;
  BindingTable& bindings_;
  DigestAuthenticator& authenticator_;
  UserLookup users_;
  const Clock& clock_;
  MetricsRegistry& metrics_;
  Counter* accepted_;
  // tandem_registrar_responses_total by status code - 100, filled on first use.
  std::array<std::atomic<Counter*>, 600> responses_by_code_{};
  // The Date header of the second date_second_ (SIP thread only).
  int64_t date_second_ = -1;
  std::string date_;
};

}  // namespace tandem
