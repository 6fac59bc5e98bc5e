#include "store/sqlite_store.h"

#include <sqlite3.h>

#include <chrono>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/clock.h"
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
          "INSERT INTO schema_version(version, applied_at_ms) VALUES ({}, {})", migration.version, NowUnixMillis());
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

namespace {

std::string ColumnText(sqlite3_stmt* stmt, int column) {
  const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt, column));
  return std::string(text ? text : "", static_cast<size_t>(sqlite3_column_bytes(stmt, column)));
}

void BindText(sqlite3_stmt* stmt, int index, const std::string& value) {
  sqlite3_bind_text(stmt, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
}

constexpr const char* kUserColumns =
    "uri, username, domain, home_pool, ha1_md5, ha1_sha256, ha1_md5_full, ha1_sha256_full, created_at_ms";

UserRecord ReadUserRow(sqlite3_stmt* stmt) {
  return UserRecord{ColumnText(stmt, 0), ColumnText(stmt, 1), ColumnText(stmt, 2),
                    ColumnText(stmt, 3), ColumnText(stmt, 4), ColumnText(stmt, 5),
                    ColumnText(stmt, 6), ColumnText(stmt, 7), sqlite3_column_int64(stmt, 8)};
}

}  // namespace

std::string UserPayloadJson(const UserRecord& user) {
  return nlohmann::json{{"uri", user.uri},
                        {"username", user.username},
                        {"domain", user.domain},
                        {"home_pool", user.home_pool},
                        {"ha1_md5", user.ha1_md5},
                        {"ha1_sha256", user.ha1_sha256},
                        {"ha1_md5_full", user.ha1_md5_full},
                        {"ha1_sha256_full", user.ha1_sha256_full},
                        {"created_at_ms", user.created_at_ms}}
      .dump();
}

Status SqliteStore::InWriteTransaction(const std::function<Status()>& body) {
  std::lock_guard lock(mu_);
  if (auto s = Exec("BEGIN IMMEDIATE"); !s) return s;
  Status result = body();
  if (!result) {
    Exec("ROLLBACK");
    return result;
  }
  return Exec("COMMIT");
}

Status SqliteStore::AppendChangeLocked(const ChangeRecord& change) {
  Statement stmt(db_, "INSERT INTO change_log(at_ms, module, home_pool, key, op, payload) VALUES (?, ?, ?, ?, ?, ?)");
  if (!stmt.ok()) return std::unexpected(SqliteError("appending to the change log"));
  sqlite3_bind_int64(stmt.get(), 1, change.at_ms);
  BindText(stmt.get(), 2, change.module);
  BindText(stmt.get(), 3, change.home_pool);
  BindText(stmt.get(), 4, change.key);
  BindText(stmt.get(), 5, change.op);
  BindText(stmt.get(), 6, change.payload);
  if (sqlite3_step(stmt.get()) != SQLITE_DONE) return std::unexpected(SqliteError("appending to the change log"));
  return OkStatus();
}

Status SqliteStore::AddUsers(const std::vector<UserRecord>& users) {
  return InWriteTransaction([&]() -> Status {
    Statement insert(db_, fmt::format("INSERT INTO users({}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", kUserColumns).c_str());
    if (!insert.ok()) return std::unexpected(SqliteError("adding users"));
    for (const UserRecord& user : users) {
      sqlite3_reset(insert.get());
      const std::string* texts[] = {&user.uri,        &user.username,   &user.domain,
                                    &user.home_pool,  &user.ha1_md5,    &user.ha1_sha256,
                                    &user.ha1_md5_full, &user.ha1_sha256_full};
      for (int i = 0; i < 8; ++i) BindText(insert.get(), i + 1, *texts[i]);
      sqlite3_bind_int64(insert.get(), 9, user.created_at_ms);
      int rc = sqlite3_step(insert.get());
      if (rc == SQLITE_CONSTRAINT) {
        return MakeError(ErrorCode::kAlreadyExists, fmt::format("user {} is already provisioned", user.uri));
      }
      if (rc != SQLITE_DONE) return std::unexpected(SqliteError("adding users"));
      if (auto logged = AppendChangeLocked({0, user.created_at_ms, "user", user.home_pool, user.uri, "upsert",
                                            UserPayloadJson(user)});
          !logged) {
        return logged;
      }
    }
    return OkStatus();
  });
}

Status SqliteStore::RemoveUser(const std::string& uri) {
  return InWriteTransaction([&]() -> Status {
    std::string home_pool;
    {
      Statement find(db_, "SELECT home_pool FROM users WHERE uri = ?");
      if (!find.ok()) return std::unexpected(SqliteError("removing a user"));
      BindText(find.get(), 1, uri);
      if (sqlite3_step(find.get()) != SQLITE_ROW) {
        return MakeError(ErrorCode::kNotFound, fmt::format("user {} is not provisioned", uri));
      }
      home_pool = ColumnText(find.get(), 0);
    }
    Statement remove(db_, "DELETE FROM users WHERE uri = ?");
    if (!remove.ok()) return std::unexpected(SqliteError("removing a user"));
    BindText(remove.get(), 1, uri);
    if (sqlite3_step(remove.get()) != SQLITE_DONE) return std::unexpected(SqliteError("removing a user"));
    return AppendChangeLocked({0, NowUnixMillis(), "user", home_pool, uri, "delete", ""});
  });
}

Result<std::optional<UserRecord>> SqliteStore::FindUser(const std::string& username, const std::string& domain) {
  std::lock_guard lock(mu_);
  Statement stmt(db_, fmt::format("SELECT {} FROM users WHERE username = ? AND domain = ?", kUserColumns).c_str());
  if (!stmt.ok()) return std::unexpected(SqliteError("finding a user"));
  BindText(stmt.get(), 1, username);
  BindText(stmt.get(), 2, domain);
  int rc = sqlite3_step(stmt.get());
  if (rc == SQLITE_DONE) return std::optional<UserRecord>();
  if (rc != SQLITE_ROW) return std::unexpected(SqliteError("finding a user"));
  return std::optional<UserRecord>(ReadUserRow(stmt.get()));
}

Result<std::vector<UserRecord>> SqliteStore::ListUsers() {
  std::lock_guard lock(mu_);
  Statement stmt(db_, fmt::format("SELECT {} FROM users ORDER BY uri", kUserColumns).c_str());
  if (!stmt.ok()) return std::unexpected(SqliteError("listing users"));
  std::vector<UserRecord> users;
  int rc;
  while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) users.push_back(ReadUserRow(stmt.get()));
  if (rc != SQLITE_DONE) return std::unexpected(SqliteError("listing users"));
  return users;
}

Result<std::vector<ChangeRecord>> SqliteStore::ReadChanges(int64_t after_seq, int limit) {
  std::lock_guard lock(mu_);
  Statement stmt(db_,
                 "SELECT seq, at_ms, module, home_pool, key, op, payload FROM change_log WHERE seq > ? ORDER BY seq "
                 "LIMIT ?");
  if (!stmt.ok()) return std::unexpected(SqliteError("reading the change log"));
  sqlite3_bind_int64(stmt.get(), 1, after_seq);
  sqlite3_bind_int(stmt.get(), 2, limit);
  std::vector<ChangeRecord> changes;
  int rc;
  while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) {
    changes.push_back(ChangeRecord{sqlite3_column_int64(stmt.get(), 0), sqlite3_column_int64(stmt.get(), 1),
                                   ColumnText(stmt.get(), 2), ColumnText(stmt.get(), 3), ColumnText(stmt.get(), 4),
                                   ColumnText(stmt.get(), 5), ColumnText(stmt.get(), 6)});
  }
  if (rc != SQLITE_DONE) return std::unexpected(SqliteError("reading the change log"));
  return changes;
}

}  // namespace tandem
