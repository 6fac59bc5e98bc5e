// Provisioning of users (Enable-CsUser / Get-CsUser / remove): the admin routes
// /users, served by any server; work for another pool is forwarded to that pool.
// Users live in their home pool's store; passwords never reach the server — the
// CLI sends HA1 digests only.
//
// Thread-safety: thread-safe; borrows the replica and the store (must outlive it).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "admin/http_server.h"
#include "cms/cms_replica.h"
#include "store/store.h"

namespace tandem {

// Parses "sip:alice@example.com" into user and domain; kInvalidArgument otherwise.
struct SipAddressOfRecord {
  std::string user;
  std::string domain;
  std::string Uri() const { return "sip:" + user + "@" + domain; }
};
Result<SipAddressOfRecord> ParseAddressOfRecord(std::string_view uri);

// A user record with all four HA1 digests computed from a password (CLI side).
Result<UserRecord> MakeUserRecord(std::string_view uri, std::string_view home_pool, std::string_view password);

nlohmann::json UserToJson(const UserRecord& user, bool with_secrets);

class UserService {
 public:
  UserService(std::string admin_token, CmsReplica& replica, Store& store, std::string local_pool);

  void RegisterRoutes(HttpServer& http);

 private:
  HttpResponse AddUsers(const HttpRequest& request);
  HttpResponse ListUsers(const HttpRequest& request);
  HttpResponse RemoveUser(const HttpRequest& request);

  const std::string admin_token_;
  CmsReplica& replica_;
  Store& store_;
  const std::string local_pool_;
};

}  // namespace tandem
