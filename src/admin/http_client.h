// A blocking HTTP/1.1 client with a deadline, for the CLI and for server-to-server
// calls (CMS pulls and pushes, forwarded admin calls). Each call uses its own
// connection and its own io_context, so it never touches the caller's event loop.
//
// Thread-safety: free functions without shared state; call from any thread.
#pragma once

#include <chrono>
#include <string>

#include "admin/http_server.h"
#include "common/error.h"

namespace tandem {

struct HttpCallOptions {
  std::string token;  // sent as "Authorization: Bearer <token>" when not empty
  std::chrono::milliseconds timeout{5000};
};

// `url` is "http://HOST:PORT/path?query". A transport failure or timeout is an
// Error (kUnavailable / kTimeout); any HTTP status, including 4xx/5xx, is a response.
Result<HttpResponse> HttpCall(std::string_view method, std::string_view url, std::string_view body,
                              const HttpCallOptions& options);

// "http://HOST:PORT" for an address (IPv6 literals get brackets) and port.
std::string HttpBaseUrl(std::string_view address, uint16_t port);

}  // namespace tandem
