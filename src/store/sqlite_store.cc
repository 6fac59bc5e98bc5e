#include "store/sqlite_store.h"

#include <sqlite3.h>

#include <chrono>

#include <fmt/format.h>

#include "store/migrations.h"

namespace tandem {
namespace {

// Finalizes a statement on every path out of a function.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr); }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  bool ok() const { return rc_ == SQLITE_OK; }
  sqlite3_stmt* get() { return stmt_; }

 private:
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

}  // namespace

Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string reason = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    return MakeError(ErrorCode::kIoError, fmt::format("cannot open SQLite store {}: {}", path, reason));
  }
  // Other servers of the pool may hold the write lock for a moment; wait rather than fail.
  sqlite3_busy_timeout(db, 10000);
  auto store = std::make_unique<SqliteStore>(db, path);
  if (auto status = store->Migrate(); !status) return std::unexpected(status.error());
  return std::unique_ptr<Store>(std::move(store));
}

SqliteStore::SqliteStore(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}

SqliteStore::~SqliteStore() { sqlite3_close(db_); }

Error SqliteStore::SqliteError(std::string_view what) const {
  return Error{ErrorCode::kIoError, fmt::format("SQLite store {}: {}: {}", path_, what, sqlite3_errmsg(db_))};
}

Status SqliteStore::Exec(const char* sql) {
  char* message = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &message) != SQLITE_OK) {
    Error error{ErrorCode::kIoError, fmt::format("SQLite store {}: {}", path_, message ? message : "error")};
    sqlite3_free(message);
    return std::unexpected(error);
  }
  return OkStatus();
}

Result<int> SqliteStore::SchemaVersionLocked() {
  Statement stmt(db_, "SELECT COALESCE(MAX(version), 0) FROM schema_version");
  if (!stmt.ok()) return std::unexpected(SqliteError("reading schema version"));
  if (sqlite3_step(stmt.get()) != SQLITE_ROW) return std::unexpected(SqliteError("reading schema version"));
  return sqlite3_column_int(stmt.get(), 0);
}

Result<int> SqliteStore::SchemaVersion() {
  std::lock_guard lock(mu_);
  return SchemaVersionLocked();
}

Status SqliteStore::Migrate() {
  std::lock_guard lock(mu_);
  // WAL lets readers (replica loads, status) proceed while a server writes.
  if (auto s = Exec("PRAGMA journal_mode=WAL"); !s) return s;
  if (auto s = Exec("PRAGMA synchronous=NORMAL"); !s) return s;
  if (auto s = Exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at_ms INTEGER NOT NULL)"); !s) {
    return s;
  }
  for (const Migration& migration : SqliteMigrations()) {
    // BEGIN IMMEDIATE takes the write lock first, so two processes migrating at once
    // serialize here and the second sees the first one's version row.
    if (auto s = Exec("BEGIN IMMEDIATE"); !s) return s;
    auto current = SchemaVersionLocked();
    if (!current) {
      Exec("ROLLBACK");
      return std::unexpected(current.error());
    }
    if (*current >= migration.version) {
      Exec("ROLLBACK");
      continue;
    }
    auto applied = Exec(migration.sql);
    if (applied) {
      std::string mark = fmt::format(
          "INSERT INTO schema_version(version, applied_at_ms) VALUES ({}, {})", migration.version,
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
      applied = Exec(mark.c_str());
    }
    if (!applied) {
      Exec("ROLLBACK");
      return MakeError(ErrorCode::kIoError,
                       fmt::format("migration {} ({}) failed: {}", migration.version, migration.name, applied.error().message));
    }
    if (auto s = Exec("COMMIT"); !s) return s;
  }
  return OkStatus();
}

Result<std::optional<CmsVersionRecord>> SqliteStore::LatestCmsVersion() {
  std::lock_guard lock(mu_);
  Statement stmt(db_, "SELECT version, published_at_ms, document FROM cms_versions ORDER BY version DESC LIMIT 1");
  if (!stmt.ok()) return std::unexpected(SqliteError("reading CMS version"));
  int rc = sqlite3_step(stmt.get());
  if (rc == SQLITE_DONE) return std::optional<CmsVersionRecord>();
  if (rc != SQLITE_ROW) return std::unexpected(SqliteError("reading CMS version"));
  CmsVersionRecord record;
  record.version = sqlite3_column_int64(stmt.get(), 0);
  record.published_at_ms = sqlite3_column_int64(stmt.get(), 1);
  const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt.get(), 2));
  record.document.assign(text ? text : "", static_cast<size_t>(sqlite3_column_bytes(stmt.get(), 2)));
  return std::optional<CmsVersionRecord>(std::move(record));
}

Status SqliteStore::AppendCmsVersion(const CmsVersionRecord& record, int64_t expected_previous) {
  std::lock_guard lock(mu_);
  if (record.version != expected_previous + 1) {
    return MakeError(ErrorCode::kInternal, "CMS version must follow the previous one");
  }
  if (auto s = Exec("BEGIN IMMEDIATE"); !s) return s;
  auto rollback_with = [&](Error error) -> Status {
    Exec("ROLLBACK");
    return std::unexpected(std::move(error));
  };
  int64_t newest = 0;
  {
    Statement stmt(db_, "SELECT COALESCE(MAX(version), 0) FROM cms_versions");
    if (!stmt.ok() || sqlite3_step(stmt.get()) != SQLITE_ROW) return rollback_with(SqliteError("reading CMS version"));
    newest = sqlite3_column_int64(stmt.get(), 0);
  }
  if (newest != expected_previous) {
    return rollback_with(Error{ErrorCode::kAlreadyExists,
                               fmt::format("CMS version {} was published concurrently; retry", newest)});
  }
  {
    Statement stmt(db_, "INSERT INTO cms_versions(version, published_at_ms, document) VALUES (?, ?, ?)");
    if (!stmt.ok()) return rollback_with(SqliteError("writing CMS version"));
    sqlite3_bind_int64(stmt.get(), 1, record.version);
    sqlite3_bind_int64(stmt.get(), 2, record.published_at_ms);
    sqlite3_bind_text(stmt.get(), 3, record.document.data(), static_cast<int>(record.document.size()), SQLITE_TRANSIENT);
    if (sqlite3_step(stmt.get()) != SQLITE_DONE) return rollback_with(SqliteError("writing CMS version"));
  }
  return Exec("COMMIT");
}

}  // namespace tandem
