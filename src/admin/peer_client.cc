#include "admin/peer_client.h"

#include <fmt/format.h>

namespace tandem {

std::string AdminUrlOf(const ServerSpec& server, std::string_view path) {
  return HttpBaseUrl(server.address, server.admin_port) + std::string(path);
}

Result<HttpResponse> CallAnyServerOf(const PoolSpec& pool, std::string_view method, std::string_view path,
                                     std::string_view body, const HttpCallOptions& options) {
  std::string last_error = "it has no servers";
  for (const ServerSpec& server : pool.servers) {
    auto response = HttpCall(method, AdminUrlOf(server, path), body, options);
    if (response) return response;
    last_error = response.error().message;
  }
  return MakeError(ErrorCode::kUnavailable, fmt::format("pool {} is unreachable ({})", pool.fqdn, last_error));
}

Result<HttpResponse> ForwardToPool(const PoolSpec& pool, const HttpRequest& request, const HttpCallOptions& options) {
  std::string target = request.path;
  char separator = '?';
  for (const auto& [key, value] : request.query) {
    target += separator + UrlEncode(key) + "=" + UrlEncode(value);
    separator = '&';
  }
  return CallAnyServerOf(pool, request.method, target, request.body, options);
}

}  // namespace tandem
