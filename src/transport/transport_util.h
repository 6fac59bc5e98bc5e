// Helpers of the SIP transport layer that work on messages alone, kept apart so
// they can be unit-tested without sockets: the server-transaction matching key
// (RFC 3261 §17.2.3) and the received=/rport= stamping of a request's top Via
// (RFC 3261 §18.2.1, RFC 3581 §4).
//
// Thread-safety: stateless functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/ip/address.hpp>

#include "sip/message.h"

namespace tandem::sip {

// The key that identifies the server transaction of `request` when it is treated
// as a request of `method` (pass "INVITE" to find the INVITE an ACK or a CANCEL
// refers to, "CANCEL" for the CANCEL's own transaction). With an RFC 3261 branch
// (magic cookie "z9hG4bK"): branch, sent-by and method. Without (RFC 2543):
// Request-URI, From tag, Call-ID, CSeq number, method and the top Via's transport,
// sent-by and branch. nullopt when the request has no usable top Via or CSeq.
std::optional<std::string> ServerTransactionKey(const SipMessage& request, std::string_view method);

// Adds "received=<source_ip>" to the top Via when its host differs from the source
// address or it carries rport, and "rport=<source_port>" when it carries rport,
// replacing any received/rport already there. Returns true when the Via changed.
bool StampTopVia(SipMessage* request, std::string_view source_ip, uint16_t source_port);

// Parses an IPv4 or IPv6 literal; IPv6 may be in brackets. nullopt otherwise.
std::optional<boost::asio::ip::address> ParseIpLiteral(std::string_view text);

// "host:port", with brackets around an IPv6 host.
std::string FormatHostPort(const boost::asio::ip::address& address, uint16_t port);

}  // namespace tandem::sip
