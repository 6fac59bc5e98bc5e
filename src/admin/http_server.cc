#include "admin/http_server.h"

#include <openssl/crypto.h>

#include <boost/asio/ip/address.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace tandem {

namespace beast = boost::beast;
namespace http = boost::beast::http;
using boost::asio::ip::tcp;

HttpResponse HttpResponse::Json(int status, std::string body) {
  HttpResponse response;
  response.status = status;
  response.body = std::move(body);
  return response;
}

HttpResponse HttpResponse::Error(int status, std::string_view message) {
  return Json(status, nlohmann::json{{"error", message}}.dump() + "\n");
}

std::string UrlDecode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() &&
        std::isxdigit(static_cast<unsigned char>(text[i + 1])) && std::isxdigit(static_cast<unsigned char>(text[i + 2]))) {
      out.push_back(static_cast<char>(std::stoi(std::string(text.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else if (text[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

std::string UrlEncode(std::string_view text) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

// One connection: read a request, answer it, repeat while keep-alive.
class HttpServer::Session : public std::enable_shared_from_this<HttpServer::Session> {
 public:
  Session(HttpServer& server, tcp::socket socket) : server_(server), stream_(std::move(socket)) {}

  void Start() { Read(); }

 private:
  void Read() {
    parser_.emplace();
    parser_->body_limit(server_.max_body_bytes_);
    parser_->header_limit(16 * 1024);
    stream_.expires_after(std::chrono::seconds(30));  // idle and slow clients are cut off
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout) return Close();
    if (ec == http::error::body_limit) {
      return Write(HttpResponse::Error(413, "request body too large"), false);
    }
    if (ec) return Close();
    auto& request = parser_->get();
    std::string remote;
    beast::error_code remote_ec;
    auto endpoint = stream_.socket().remote_endpoint(remote_ec);
    if (!remote_ec) remote = endpoint.address().to_string();
    HttpResponse response = server_.Dispatch(std::string(request.method_string()), std::string(request.target()),
                                             std::string(request[http::field::authorization]),
                                             std::move(request.body()), remote);
    Write(response, request.keep_alive());
  }

  void Write(const HttpResponse& response, bool keep_alive) {
    auto message = std::make_shared<http::response<http::string_body>>();
    message->version(11);
    message->result(static_cast<http::status>(response.status));
    message->set(http::field::server, "tandemd");
    message->set(http::field::content_type, response.content_type);
    if (response.status == 401) message->set(http::field::www_authenticate, "Bearer realm=\"tandem admin\"");
    message->keep_alive(keep_alive);
    message->body() = response.body;
    message->prepare_payload();
    stream_.expires_after(std::chrono::seconds(30));
    http::async_write(stream_, *message, [self = shared_from_this(), message, keep_alive](beast::error_code ec, size_t) {
      if (ec || !keep_alive) return self->Close();
      self->Read();
    });
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
  }

  HttpServer& server_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
};

HttpServer::HttpServer(boost::asio::io_context& io, std::string admin_token, size_t max_body_bytes)
    : io_(io), admin_token_(std::move(admin_token)), max_body_bytes_(max_body_bytes) {
  TANDEM_CHECK(!admin_token_.empty());
}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Route(std::string method, std::string path, HttpHandler handler, Access access) {
  routes_[{std::move(method), std::move(path)}] = RouteEntry{std::move(handler), access};
}

Result<uint16_t> HttpServer::Listen(const std::string& address, uint16_t port) {
  boost::system::error_code ec;
  auto ip = boost::asio::ip::make_address(address, ec);
  if (ec) return MakeError(ErrorCode::kInvalidArgument, fmt::format("admin address '{}' is not an IP address", address));
  auto acceptor = std::make_unique<tcp::acceptor>(io_);
  tcp::endpoint endpoint(ip, port);
  acceptor->open(endpoint.protocol(), ec);
  if (!ec) acceptor->set_option(boost::asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor->bind(endpoint, ec);
  if (!ec) acceptor->listen(boost::asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return MakeError(ErrorCode::kUnavailable,
                     fmt::format("cannot listen for admin HTTP on {}:{}: {}", address, port, ec.message()));
  }
  uint16_t bound = acceptor->local_endpoint().port();
  acceptor_ = std::move(acceptor);
  Accept();
  return bound;
}

void HttpServer::Stop() {
  if (acceptor_) {
    boost::system::error_code ignored;
    acceptor_->close(ignored);
  }
}

void HttpServer::Accept() {
  acceptor_->async_accept([this](boost::system::error_code ec, tcp::socket socket) {
    if (ec == boost::asio::error::operation_aborted) return;
    if (!ec) std::make_shared<Session>(*this, std::move(socket))->Start();
    if (acceptor_->is_open()) Accept();
  });
}

bool HttpServer::IsAuthorized(std::string_view authorization) const {
  constexpr std::string_view kBearer = "Bearer ";
  return authorization.size() == kBearer.size() + admin_token_.size() && authorization.starts_with(kBearer) &&
         CRYPTO_memcmp(authorization.data() + kBearer.size(), admin_token_.data(), admin_token_.size()) == 0;
}

HttpResponse HttpServer::Dispatch(const std::string& method, const std::string& target,
                                  const std::string& authorization, std::string body, std::string remote) {
  HttpRequest request;
  request.method = method;
  request.body = std::move(body);
  request.remote_address = std::move(remote);
  auto question = target.find('?');
  request.path = UrlDecode(target.substr(0, question));
  if (question != std::string::npos) {
    std::string_view query(target);
    query.remove_prefix(question + 1);
    while (!query.empty()) {
      auto amp = query.find('&');
      std::string_view pair = query.substr(0, amp);
      auto eq = pair.find('=');
      request.query[UrlDecode(pair.substr(0, eq))] =
          eq == std::string_view::npos ? std::string() : UrlDecode(pair.substr(eq + 1));
      if (amp == std::string_view::npos) break;
      query.remove_prefix(amp + 1);
    }
  }

  auto route = routes_.find({request.method, request.path});
  bool is_public = route != routes_.end() && route->second.access == Access::kPublic;
  // Unknown routes need the token too, so the API's shape cannot be probed for free.
  if (!is_public && !IsAuthorized(authorization)) {
    ++unauthorized_requests_;
    spdlog::warn("admin: refused {} {} from {}: missing or wrong token", request.method, request.path,
                 request.remote_address);
    return HttpResponse::Error(401, "missing or wrong admin token");
  }
  if (route == routes_.end()) {
    for (const auto& [key, entry] : routes_) {
      if (key.second == request.path) return HttpResponse::Error(405, "method not allowed");
    }
    return HttpResponse::Error(404, "no such endpoint");
  }
  return route->second.handler(request);
}

}  // namespace tandem
