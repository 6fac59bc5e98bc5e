// The back-end store: the persistent truth of a pool (CMS versions now; users,
// user data, conference data and the change log as later modules add them).
// One interface, several implementations (SQLite embedded default; PostgreSQL).
//
// Thread-safety: a Store object may be used from several threads; implementations
// serialize access internally. Several processes may open the same SQLite file.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"

namespace tandem {

// One published version of the Central Management Store document.
struct CmsVersionRecord {
  int64_t version = 0;
  int64_t published_at_ms = 0;  // Unix time, milliseconds
  std::string document;         // the serialized CMS document (JSON)
};

// A provisioned user. Passwords are never stored: only HA1 digests, for the short
// digest username ("alice") and the full one ("alice@example.com"), per algorithm.
struct UserRecord {
  std::string uri;        // "sip:alice@example.com"
  std::string username;   // "alice"
  std::string domain;     // "example.com" (also the digest realm)
  std::string home_pool;  // FQDN of the pool that homes the user
  std::string ha1_md5;
  std::string ha1_sha256;
  std::string ha1_md5_full;     // HA1 with "alice@example.com" as the digest username
  std::string ha1_sha256_full;
  int64_t created_at_ms = 0;
};

// One entry of the change log: every mutation of user or conference data appends
// exactly one, in the same transaction. The Backup Service ships these.
struct ChangeRecord {
  int64_t seq = 0;  // strictly increasing
  int64_t at_ms = 0;
  std::string module;     // "user", "conference", "cms"
  std::string home_pool;  // the pool homing the data
  std::string key;        // e.g. the user's URI
  std::string op;         // "upsert" or "delete"
  std::string payload;    // JSON of the new value ("" for delete)
};

// The JSON form of a user, as the change log carries it.
std::string UserPayloadJson(const UserRecord& user);

class Store {
 public:
  virtual ~Store() = default;

  // Applies schema migrations up to the newest version. Safe to call from several
  // processes at once; each migration runs exactly once.
  virtual Status Migrate() = 0;
  // The schema version after Migrate().
  virtual Result<int> SchemaVersion() = 0;

  // The newest CMS version, or nullopt when nothing was ever published.
  virtual Result<std::optional<CmsVersionRecord>> LatestCmsVersion() = 0;
  // Stores `record` as the next version if and only if the newest stored version is
  // `expected_previous` (0 = none). kAlreadyExists if another writer got there first.
  virtual Status AppendCmsVersion(const CmsVersionRecord& record, int64_t expected_previous) = 0;

  // Adds every user or none (one transaction, one change-log entry each).
  // kAlreadyExists names the first URI already provisioned.
  virtual Status AddUsers(const std::vector<UserRecord>& users) = 0;
  // kNotFound if the URI is not provisioned.
  virtual Status RemoveUser(const std::string& uri) = 0;
  virtual Result<std::optional<UserRecord>> FindUser(const std::string& username, const std::string& domain) = 0;
  virtual Result<std::vector<UserRecord>> ListUsers() = 0;

  // Change-log entries with seq > `after_seq`, oldest first, at most `limit`.
  virtual Result<std::vector<ChangeRecord>> ReadChanges(int64_t after_seq, int limit) = 0;
};

// Opens (creating if needed) a SQLite store at `path` and migrates it.
Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path);

}  // namespace tandem
