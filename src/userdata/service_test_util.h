// Test helpers shared by the user-data and conference service tests: a temporary
// store with provisioned users, CMS replicas for the example topologies, request
// builders, and a fake remote pool (a real HttpServer on a port-0 socket) to see
// what gets forwarded. Test-only; header-only.
//
// Thread-safety: FakePool records requests under a mutex; the rest is for one test
// thread.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "admin/http_server.h"
#include "cms/cms_replica.h"
#include "common/file_util.h"
#include "store/store.h"

namespace tandem::testing {

inline constexpr const char* kToken = "test-admin-token";
inline constexpr const char* kPool1 = "pool1.example.com";
inline constexpr const char* kPool2 = "pool2.example.com";

inline std::string TempDir() {
  std::string dir = (std::filesystem::temp_directory_path() / "tandem-svc-XXXXXX").string();
  TANDEM_CHECK(::mkdtemp(dir.data()) != nullptr);
  return dir;
}

inline HttpRequest Request(std::string method, std::string path, std::map<std::string, std::string> query = {},
                           std::string body = "") {
  return HttpRequest{std::move(method), std::move(path), std::move(query), std::move(body), "127.0.0.1"};
}

inline nlohmann::json Body(const HttpResponse& response) {
  return nlohmann::json::parse(response.body, nullptr, false);
}

inline std::string ErrorOf(const HttpResponse& response) {
  auto body = Body(response);
  return body.is_object() && body.contains("error") && body["error"].is_string() ? body["error"].get<std::string>()
                                                                                  : "";
}

inline UserRecord TestUser(const std::string& name, const std::string& pool = kPool1) {
  return UserRecord{"sip:" + name + "@example.com", name, "example.com", pool, "m", "s", "mf", "sf", 1};
}

// A store in a temporary directory with alice and bob provisioned in pool1.
inline std::unique_ptr<Store> TestStore(const std::string& dir) {
  auto store = OpenSqliteStore(dir + "/pool.db");
  TANDEM_CHECK(store.has_value());
  TANDEM_CHECK((*store)->AddUsers({TestUser("alice"), TestUser("bob")}).has_value());
  return std::move(*store);
}

inline size_t ChangeCount(Store& store) { return store.ReadChanges(0, 1000000)->size(); }

inline std::unique_ptr<CmsReplica> ReplicaFromText(const std::string& dir, const std::string& file,
                                                   const std::string& toml) {
  auto replica = CmsReplica::Open(dir + "/replica.json", CmsDocument{0, 0, file, toml});
  TANDEM_CHECK(replica.has_value());
  return std::move(*replica);
}

// examples/single-server.toml: one pool, pool1.
inline std::unique_ptr<CmsReplica> SingleServerReplica(const std::string& dir) {
  auto text = ReadFile(std::string(TANDEM_SOURCE_DIR) + "/examples/single-server.toml");
  TANDEM_CHECK(text.has_value());
  return ReplicaFromText(dir, "single-server.toml", *text);
}

// `count` distinct ports nobody listens on (bound, then released).
inline std::vector<uint16_t> ClosedPorts(size_t count) {
  boost::asio::io_context io;
  std::vector<std::unique_ptr<boost::asio::ip::tcp::acceptor>> acceptors;
  std::vector<uint16_t> ports;
  for (size_t i = 0; i < count; ++i) {
    acceptors.push_back(std::make_unique<boost::asio::ip::tcp::acceptor>(
        io, boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0)));
    ports.push_back(acceptors.back()->local_endpoint().port());
  }
  return ports;
}

// examples/two-sites.toml with pool2's first server on `pool2_port` (nullopt: a
// closed port) and its other servers on closed ports.
inline std::unique_ptr<CmsReplica> TwoSitesReplica(const std::string& dir, std::optional<uint16_t> pool2_port) {
  auto text = ReadFile(std::string(TANDEM_SOURCE_DIR) + "/examples/two-sites.toml");
  TANDEM_CHECK(text.has_value());
  std::string toml = *text;
  std::vector<uint16_t> closed = ClosedPorts(3);
  const char* originals[] = {"admin_port = 8201", "admin_port = 8202", "admin_port = 8203"};
  for (int i = 0; i < 3; ++i) {
    uint16_t port = i == 0 && pool2_port ? *pool2_port : closed[i];
    auto at = toml.find(originals[i]);
    TANDEM_CHECK(at != std::string::npos);
    toml.replace(at, std::string_view(originals[i]).size(), "admin_port = " + std::to_string(port));
  }
  return ReplicaFromText(dir, "two-sites.toml", toml);
}

// A stand-in for a remote pool's server: answers the routes given with `handler`
// and records every request it gets.
class FakePool {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;

  FakePool(const std::vector<std::pair<std::string, std::string>>& routes, Handler handler)
      : handler_(std::move(handler)) {
    for (const auto& [method, path] : routes) {
      server_.Route(method, path, [this](const HttpRequest& request) {
        std::lock_guard lock(mu_);
        requests_.push_back(request);
        return handler_(request);
      });
    }
    auto port = server_.Listen("127.0.0.1", 0);
    TANDEM_CHECK(port.has_value());
    port_ = *port;
    thread_ = std::thread([this] { io_.run(); });
  }
  ~FakePool() {
    work_.reset();
    server_.Stop();
    io_.stop();
    thread_.join();
  }

  uint16_t port() const { return port_; }
  std::vector<HttpRequest> requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }

 private:
  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_{io_.get_executor()};
  HttpServer server_{io_, kToken, 64u << 20};
  Handler handler_;
  uint16_t port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::vector<HttpRequest> requests_;
};

}  // namespace tandem::testing
