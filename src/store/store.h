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

#include "common/error.h"

namespace tandem {

// One published version of the Central Management Store document.
struct CmsVersionRecord {
  int64_t version = 0;
  int64_t published_at_ms = 0;  // Unix time, milliseconds
  std::string document;         // the serialized CMS document (JSON)
};

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
};

// Opens (creating if needed) a SQLite store at `path` and migrates it.
Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path);

}  // namespace tandem
