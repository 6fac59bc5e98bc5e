#include "admin/http_server.h"

#include <thread>

#include <gtest/gtest.h>

#include "admin/http_client.h"

namespace tandem {
namespace {

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_.Route("GET", "/health", [](const HttpRequest&) { return HttpResponse::Json(200, "{\"ok\":true}"); },
                  HttpServer::Access::kPublic);
    server_.Route("POST", "/echo", [this](const HttpRequest& request) {
      ++calls_;
      return HttpResponse::Json(200, request.body + "|" + request.query.at("x"));
    });
    auto port = server_.Listen("127.0.0.1", 0);
    ASSERT_TRUE(port) << port.error().message;
    base_ = HttpBaseUrl("127.0.0.1", *port);
    thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    work_.reset();
    server_.Stop();
    io_.stop();
    thread_.join();
  }

  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_{io_.get_executor()};
  HttpServer server_{io_, "secret-token"};
  std::string base_;
  std::thread thread_;
  std::atomic<int> calls_{0};
};

TEST_F(HttpServerTest, PublicRouteNeedsNoToken) {
  auto response = HttpCall("GET", base_ + "/health", "", {});
  ASSERT_TRUE(response) << response.error().message;
  EXPECT_EQ(response->status, 200);
}

TEST_F(HttpServerTest, MissingOrWrongTokenIs401AndReachesNoHandler) {
  auto missing = HttpCall("POST", base_ + "/echo", "a", {});
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 401);
  auto wrong = HttpCall("POST", base_ + "/echo", "a", {.token = "secret-tokeN"});
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 401);
  auto unknown = HttpCall("GET", base_ + "/nothing-here", "", {});
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 401);
  EXPECT_EQ(calls_.load(), 0);
  EXPECT_EQ(server_.unauthorized_requests(), 3u);
}

TEST_F(HttpServerTest, TokenReachesHandlerWithBodyAndQuery) {
  auto response = HttpCall("POST", base_ + "/echo?x=a%20b", "body", {.token = "secret-token"});
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "body|a b");
  auto unknown = HttpCall("GET", base_ + "/nothing-here", "", {.token = "secret-token"});
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
}

TEST(HttpClientTest, RefusedConnectionIsUnavailable) {
  // Bind then close to find a port with nobody listening.
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor acceptor(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  uint16_t port = acceptor.local_endpoint().port();
  acceptor.close();
  auto response = HttpCall("GET", HttpBaseUrl("127.0.0.1", port) + "/health", "", {});
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, ErrorCode::kUnavailable);
}

}  // namespace
}  // namespace tandem
