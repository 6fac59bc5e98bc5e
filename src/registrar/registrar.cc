#include "registrar/registrar.h"

#include <ctime>
#include <iterator>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace tandem {

using sip::HeaderId;

namespace {

std::string RfcDate(int64_t unix_seconds) {
  std::time_t seconds = unix_seconds;
  std::tm tm{};
  ::gmtime_r(&seconds, &tm);
  char buffer[64];
  std::strftime(buffer, sizeof(buffer), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return buffer;
}

std::string Lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), ::tolower);
  return out;
}

}  // namespace

Registrar::Registrar(RegistrarOptions options, BindingTable& bindings, DigestAuthenticator& authenticator,
                     UserLookup users, MetricsRegistry& metrics, const Clock& clock)
    : options_(std::move(options)),
      bindings_(bindings),
      authenticator_(authenticator),
      users_(std::move(users)),
      clock_(clock),
      metrics_(metrics),
      accepted_(metrics.GetCounter("tandem_registrar_registers_accepted_total", "REGISTER requests answered 200")) {}

void Registrar::Reply(const std::shared_ptr<sip::ServerTransaction>& transaction, int code, std::string_view reason,
                      const std::vector<std::pair<std::string, std::string>>& headers) {
  sip::SipMessage response = sip::BuildResponse(transaction->request(), code, reason, transaction->to_tag());
  for (const auto& [name, value] : headers) response.AddHeader(name, value);
  Send(transaction, std::move(response));
}

void Registrar::Send(const std::shared_ptr<sip::ServerTransaction>& transaction, sip::SipMessage response) {
  const int code = response.status_code();
  const bool cached = code >= 100 && code < 700;
  Counter* counter = cached ? responses_by_code_[code - 100].load(std::memory_order_relaxed) : nullptr;
  if (counter == nullptr) {
    counter = metrics_.GetCounter("tandem_registrar_responses_total", "REGISTER responses by status code",
                                  fmt::format("code=\"{}\"", code));
    if (cached) responses_by_code_[code - 100].store(counter, std::memory_order_relaxed);
  }
  counter->Increment();
  transaction->Respond(std::move(response));
}

// Digest authentication; the digest user must be the To user (no registering for
// others). Answers the request itself and returns false unless it may proceed.
bool Registrar::Authenticate(const std::shared_ptr<sip::ServerTransaction>& transaction, const std::string& user,
                             const std::string& domain, const std::string& aor) {
  const sip::SipMessage& request = transaction->request();
  auto lookup = [&](const Ha1LookupKey& key) -> std::optional<StoredHa1> {
    auto found = users_(std::string(key.user), domain);
    if (!found || !found->has_value()) return std::nullopt;
    const UserRecord& record = **found;
    // A client sending "alice@example.com" as the digest username hashed that string.
    bool full = key.digest_username.find('@') != std::string_view::npos;
    return StoredHa1{full ? record.ha1_md5_full : record.ha1_md5, full ? record.ha1_sha256_full : record.ha1_sha256};
  };
  AuthRequest auth_request{.method = request.method(),
                           .request_uri = request.request_uri(),
                           .authorization = request.FindHeader(HeaderId::kAuthorization),
                           .source_ip = transaction->source().address,
                           .expected_user = user,
                           .realm = options_.domain,
                           .domain = options_.domain};
  AuthDecision decision = authenticator_.Authenticate(auth_request, lookup);
  switch (decision.outcome) {
    case AuthOutcome::kAccept:
      return true;
    case AuthOutcome::kChallenge:
    case AuthOutcome::kStaleChallenge: {
      std::vector<std::pair<std::string, std::string>> headers;
      for (const std::string& challenge : decision.challenges) headers.emplace_back("WWW-Authenticate", challenge);
      Reply(transaction, 401, "Unauthorized", headers);
      return false;
    }
    case AuthOutcome::kBadRequest:
      Reply(transaction, 400, "Bad Request");
      return false;
    case AuthOutcome::kForbidden:
      spdlog::info("registrar: refused {} from {}: {}", aor, transaction->source().address, decision.reason);
      Reply(transaction, 403, "Forbidden");
      return false;
    case AuthOutcome::kThrottled:
      spdlog::warn("registrar: throttled {} from {}: {}", aor, transaction->source().address, decision.reason);
      Reply(transaction, 503, "Service Unavailable", {{"Retry-After", std::to_string(decision.retry_after.count())}});
      return false;
  }
  return false;
}

void Registrar::HandleRegister(const std::shared_ptr<sip::ServerTransaction>& transaction) {
  const sip::SipMessage& request = transaction->request();

  // An extension we do not support must be refused, not ignored (RFC 3261 §8.2.2.3).
  if (auto require = request.FindHeader(HeaderId::kRequire); require && !require->empty()) {
    return Reply(transaction, 420, "Bad Extension", {{"Unsupported", std::string(*require)}});
  }

  auto to = request.To();
  if (!to) return Reply(transaction, 400, "Bad To Header");
  std::string user = to->uri.UnescapedUser();
  std::string domain = Lower(to->uri.host);
  if (domain != options_.domain || user.empty()) {
    return Reply(transaction, 404, "Not Found", {{"Warning", fmt::format("399 tandem \"this registrar serves {}\"", options_.domain)}});
  }
  std::string aor;
  aor.reserve(5 + user.size() + domain.size());
  aor.append("sip:").append(user).push_back('@');
  aor.append(domain);

  if (options_.authenticate) {
    if (!Authenticate(transaction, user, domain, aor)) return;
  } else {
    auto found = users_(user, domain);
    if (!found || !found->has_value()) return Reply(transaction, 404, "Not Found");
  }

  auto cseq = request.CSeq();
  if (!cseq) return Reply(transaction, 400, "Bad CSeq");
  auto header_expires = request.Expires();
  if (!header_expires) return Reply(transaction, 400, "Bad Expires");
  auto contacts = request.Contacts();
  if (!contacts) return Reply(transaction, 400, "Bad Contact");

  std::vector<BindingChange> changes;
  bool remove_all = contacts->is_star;
  if (remove_all) {
    // "Contact: *" only with Expires: 0 and no other contact (RFC 3261 §10.2.2).
    if (contacts->contacts.size() > 0 || !header_expires->has_value() || **header_expires != 0) {
      return Reply(transaction, 400, "Invalid Contact: * (needs Expires: 0 and no other contact)");
    }
  }
  for (const sip::NameAddr& contact : contacts->contacts) {
    auto param_expires = sip::ContactExpires(contact);
    auto q = sip::ContactQ(contact);
    if (!q || (q->has_value() && (**q < 0 || **q > 1000))) return Reply(transaction, 400, "Bad q-value");
    // An unparsable or huge expires param falls back to the default (RFC 3261 §10.3 step 6).
    uint32_t expires = param_expires && param_expires->has_value() ? **param_expires
                       : header_expires->has_value()               ? **header_expires
                                                                   : options_.default_expires;
    if (expires > 0 && expires < options_.min_expires) {
      return Reply(transaction, 423, "Interval Too Brief", {{"Min-Expires", std::to_string(options_.min_expires)}});
    }
    expires = std::min(expires, options_.max_expires);
    changes.push_back(BindingChange{std::string(contact.uri.text), q->value_or(1000), expires});
  }

  int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(clock_.Now().time_since_epoch()).count();
  auto applied = bindings_.Apply(aor, changes, remove_all, std::string(request.CallId()), cseq->number,
                                 transaction->source(), now_ms);
  if (!applied) {
    if (applied.error().code == ErrorCode::kFailedPrecondition) {
      return Reply(transaction, 500, "Server Internal Error", {{"Warning", "399 tandem \"out-of-order CSeq\""}});
    }
    return Reply(transaction, 403, "Forbidden", {{"Warning", fmt::format("399 tandem \"{}\"", applied.error().message)}});
  }

  // Written straight into the response: this runs for every accepted REGISTER.
  sip::SipMessage response = sip::BuildResponse(request, 200, "OK", transaction->to_tag());
  fmt::memory_buffer contact;
  for (const Binding& binding : *applied) {
    int64_t remaining = std::max<int64_t>(0, (binding.expires_at_ms - now_ms + 999) / 1000);
    contact.clear();
    fmt::format_to(std::back_inserter(contact), "<{}>;expires={}", binding.contact_uri, remaining);
    if (binding.q_millis != 1000) {
      fmt::format_to(std::back_inserter(contact), ";q={}.{:03}", binding.q_millis / 1000, binding.q_millis % 1000);
    }
    response.AddHeader(HeaderId::kContact, std::string_view(contact.data(), contact.size()));
  }
  // The Date text changes once a second; formatting it is not free.
  if (const int64_t second = now_ms / 1000; second != date_second_) {
    date_ = RfcDate(second);
    date_second_ = second;
  }
  response.AddHeader("Date", date_);
  accepted_->Increment();
  Send(transaction, std::move(response));
}

}  // namespace tandem
