#include "admin/http_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>

namespace tandem {

namespace beast = boost::beast;
namespace http = boost::beast::http;
using boost::asio::ip::tcp;

namespace {

struct ParsedUrl {
  std::string host;
  std::string port;
  std::string target;
};

Result<ParsedUrl> ParseHttpUrl(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (!url.starts_with(kScheme)) {
    return MakeError(ErrorCode::kInvalidArgument, fmt::format("'{}' is not an http:// URL", url));
  }
  url.remove_prefix(kScheme.size());
  auto slash = url.find('/');
  std::string_view authority = url.substr(0, slash);
  ParsedUrl parsed;
  parsed.target = slash == std::string_view::npos ? "/" : std::string(url.substr(slash));
  if (authority.starts_with('[')) {  // [IPv6]:port
    auto close = authority.find(']');
    if (close == std::string_view::npos) return MakeError(ErrorCode::kInvalidArgument, "bad IPv6 literal in URL");
    parsed.host = std::string(authority.substr(1, close - 1));
    authority.remove_prefix(close + 1);
    parsed.port = authority.starts_with(':') ? std::string(authority.substr(1)) : "80";
  } else {
    auto colon = authority.rfind(':');
    parsed.host = std::string(authority.substr(0, colon));
    parsed.port = colon == std::string_view::npos ? "80" : std::string(authority.substr(colon + 1));
  }
  if (parsed.host.empty()) return MakeError(ErrorCode::kInvalidArgument, fmt::format("no host in URL '{}'", url));
  return parsed;
}

}  // namespace

std::string HttpBaseUrl(std::string_view address, uint16_t port) {
  if (address.find(':') != std::string_view::npos) return fmt::format("http://[{}]:{}", address, port);
  return fmt::format("http://{}:{}", address, port);
}

Result<HttpResponse> HttpCall(std::string_view method, std::string_view url, std::string_view body,
                              const HttpCallOptions& options) {
  auto parsed = ParseHttpUrl(url);
  if (!parsed) return std::unexpected(parsed.error());

  boost::asio::io_context io;
  beast::tcp_stream stream(io);
  beast::flat_buffer buffer;
  http::request<http::string_body> request(http::string_to_verb(boost::beast::string_view(method.data(), method.size())), parsed->target, 11);
  request.set(http::field::host, parsed->host);
  request.set(http::field::user_agent, "tandem");
  if (!options.token.empty()) request.set(http::field::authorization, "Bearer " + options.token);
  request.body() = std::string(body);
  request.prepare_payload();
  http::response_parser<http::string_body> parser;
  parser.body_limit(256ull << 20);

  beast::error_code failure;
  std::string stage = "connect to";
  tcp::resolver resolver(io);
  stream.expires_after(options.timeout);
  resolver.async_resolve(parsed->host, parsed->port, [&](beast::error_code ec, tcp::resolver::results_type results) {
    if (ec) {
      failure = ec;
      return;
    }
    stream.async_connect(results, [&](beast::error_code ec, const tcp::endpoint&) {
      if (ec) {
        failure = ec;
        return;
      }
      stage = "send to";
      http::async_write(stream, request, [&](beast::error_code ec, size_t) {
        if (ec) {
          failure = ec;
          return;
        }
        stage = "read from";
        http::async_read(stream, buffer, parser, [&](beast::error_code ec, size_t) { failure = ec; });
      });
    });
  });
  io.run();
  if (failure) {
    ErrorCode code = failure == beast::error::timeout ? ErrorCode::kTimeout : ErrorCode::kUnavailable;
    return MakeError(code, fmt::format("cannot {} {}: {}", stage, url, failure.message()));
  }
  HttpResponse response;
  response.status = static_cast<int>(parser.get().result_int());
  response.content_type = std::string(parser.get()[http::field::content_type]);
  response.body = std::move(parser.get().body());
  return response;
}

}  // namespace tandem
