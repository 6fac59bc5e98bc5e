// Calls to the admin API of another server or pool, with the shared admin token:
// used wherever a server forwards work to the pool that owns it.
//
// Thread-safety: free functions; call from any thread.
#pragma once

#include <chrono>
#include <string_view>

#include "admin/http_client.h"
#include "topology/topology.h"

namespace tandem {

std::string AdminUrlOf(const ServerSpec& server, std::string_view path);

// Sends the request to the servers of `pool` in turn until one answers (any HTTP
// status). kUnavailable, naming the pool, when none does.
Result<HttpResponse> CallAnyServerOf(const PoolSpec& pool, std::string_view method, std::string_view path,
                                     std::string_view body, const HttpCallOptions& options);

// Sends `request` as it came (method, path, every query parameter, body) to the
// servers of `pool` in turn: a server passing on work another pool owns.
Result<HttpResponse> ForwardToPool(const PoolSpec& pool, const HttpRequest& request, const HttpCallOptions& options);

}  // namespace tandem
