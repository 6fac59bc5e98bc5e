// A small HTTP/1.1 server (Boost.Beast) for the admin API and inter-server traffic
// (CMS pushes and pulls). Every route but the ones registered as public requires
// `Authorization: Bearer <admin token>`; a request without it gets 401 and reaches
// no handler.
//
// Thread-safety: routes are registered before Start(); handlers then run on the
// threads that run the io_context passed in, possibly concurrently, and must be
// thread-safe themselves. The io_context must outlive the server.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "common/error.h"

namespace tandem {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // without the query string
  std::map<std::string, std::string> query;
  std::string body;
  std::string remote_address;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;

  static HttpResponse Json(int status, std::string body);
  // {"error": message}, the shape every failing admin call answers with.
  static HttpResponse Error(int status, std::string_view message);
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

class HttpServer {
 public:
  enum class Access { kTokenRequired, kPublic };

  HttpServer(boost::asio::io_context& io, std::string admin_token, size_t max_body_bytes = 1 << 20);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  void Route(std::string method, std::string path, HttpHandler handler, Access access = Access::kTokenRequired);

  // Binds and starts accepting. Returns the bound port (useful with port 0).
  Result<uint16_t> Listen(const std::string& address, uint16_t port);
  void Stop();

  uint64_t unauthorized_requests() const { return unauthorized_requests_.load(); }

 private:
  class Session;
  struct RouteEntry {
    HttpHandler handler;
    Access access;
  };

  void Accept();
  bool IsAuthorized(std::string_view authorization) const;  // constant-time token check
  HttpResponse Dispatch(const std::string& method, const std::string& target, const std::string& authorization,
                        std::string body, std::string remote);

  boost::asio::io_context& io_;
  std::string admin_token_;
  size_t max_body_bytes_;
  std::map<std::pair<std::string, std::string>, RouteEntry> routes_;
  std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor_;
  std::atomic<uint64_t> unauthorized_requests_{0};
};

// Percent-decodes a URL component ("a%20b" -> "a b"); invalid escapes are kept as is.
std::string UrlDecode(std::string_view text);
std::string UrlEncode(std::string_view text);

}  // namespace tandem
