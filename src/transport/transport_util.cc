#include "transport/transport_util.h"

#include <fmt/format.h>

#include "sip/header_values.h"
#include "sip/syntax.h"

namespace tandem::sip {
namespace {

// Field separator of transaction keys: header values never hold a raw LF.
constexpr char kKeySeparator = '\n';

std::string_view StripBrackets(std::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') return host.substr(1, host.size() - 2);
  return host;
}

void AppendField(std::string* key, std::string_view field) {
  key->append(field);
  key->push_back(kKeySeparator);
}

void AppendLowerField(std::string* key, std::string_view field) {
  for (char c : field) key->push_back(ToLowerAscii(c));
  key->push_back(kKeySeparator);
}

bool SameAddress(std::string_view via_host, std::string_view source_ip) {
  std::optional<boost::asio::ip::address> host = ParseIpLiteral(via_host);
  std::optional<boost::asio::ip::address> source = ParseIpLiteral(source_ip);
  return host && source && *host == *source;
}

}  // namespace

std::optional<std::string> ServerTransactionKey(const SipMessage& request, std::string_view method) {
  Result<ViaHeader> via = request.TopVia();
  if (!via) return std::nullopt;
  std::string port = via->has_port ? std::to_string(via->port) : std::string();
  std::string key;
  key.reserve(160);
  if (IsRfc3261Branch(via->branch)) {
    key.push_back('1');
    key.push_back(kKeySeparator);
    AppendField(&key, via->branch);
    AppendLowerField(&key, via->host);
    AppendField(&key, port);
    AppendField(&key, method);
    return key;
  }
  Result<CSeqHeader> cseq = request.CSeq();
  if (!cseq) return std::nullopt;
  key.push_back('2');
  key.push_back(kKeySeparator);
  AppendField(&key, request.request_uri());
  AppendField(&key, request.FromTag());
  AppendField(&key, request.CallId());
  AppendField(&key, std::to_string(cseq->number));
  AppendField(&key, method);
  AppendLowerField(&key, via->transport);
  AppendLowerField(&key, via->host);
  AppendField(&key, port);
  AppendField(&key, via->branch);
  return key;
}

bool StampTopVia(SipMessage* request, std::string_view source_ip, uint16_t source_port) {
  Result<ViaHeader> via = request->TopVia();
  if (!via) return false;
  bool wants_rport = via->has_rport;
  if (!wants_rport && SameAddress(via->host, source_ip)) return false;

  // Rebuilt from its parts rather than edited in place: the parser already
  // validated them, and this drops any received/rport the sender put there.
  std::string top = fmt::format("{}/{}/{} {}", via->protocol_name, via->protocol_version, via->transport, via->host);
  if (via->has_port) top += fmt::format(":{}", via->port);
  GenericParamIterator it(via->params);
  GenericParam param;
  while (it.Next(&param)) {
    if (EqualsIgnoreCase(param.name, "received") || EqualsIgnoreCase(param.name, "rport")) continue;
    top.push_back(';');
    top.append(param.name);
    if (param.has_value) {
      top.push_back('=');
      top.append(param.value);
    }
  }
  if (!it.ok()) return false;
  // RFC 5118 §4.5: an IPv6 received value has no brackets.
  top += fmt::format(";received={}", StripBrackets(source_ip));
  if (wants_rport) top += fmt::format(";rport={}", source_port);

  size_t index = request->FindHeaderIndex(HeaderId::kVia);
  if (index == SipMessage::npos || !request->RemoveTopValue(HeaderId::kVia)) return false;
  request->InsertHeader(index, CanonicalHeaderName(HeaderId::kVia), top);
  return true;
}

std::optional<boost::asio::ip::address> ParseIpLiteral(std::string_view text) {
  text = StripBrackets(text);
  if (text.empty()) return std::nullopt;
  boost::system::error_code ec;
  boost::asio::ip::address address = boost::asio::ip::make_address(std::string(text), ec);
  if (ec) return std::nullopt;
  return address;
}

std::string FormatHostPort(const boost::asio::ip::address& address, uint16_t port) {
  if (address.is_v6()) return fmt::format("[{}]:{}", address.to_string(), port);
  return fmt::format("{}:{}", address.to_string(), port);
}

}  // namespace tandem::sip
