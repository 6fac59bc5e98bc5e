// The client side of the link between paired pools: a request signed with the
// pairing secret (see batch_codec.h) sent to whichever server of the partner pool
// answers. The receiving side is BackupLinkServer.
//
// Thread-safety: free functions; call from any thread.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "backup/pairing.h"
#include "common/error.h"

namespace tandem {

// Adds params["source"] (the local pool) and the signature, sends, and returns the
// JSON object the partner answered with 200. Anything else is an error naming the
// partner and its reason.
Result<nlohmann::json> CallPartner(const Pairing& pairing, const std::string& secret, std::string_view method,
                                   std::string_view path, std::map<std::string, std::string> params,
                                   std::string_view body, std::chrono::milliseconds timeout);

}  // namespace tandem
