#include "store/sqlite_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "store/migrations.h"
#include "store/replication.h"
#include "store/store_checks.h"

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
  // Servers of a pool start together on a fresh file: switching it to WAL and the
  // first migrations can meet a lock that SQLite reports at once rather than waiting
  // for (SQLITE_BUSY without the busy handler). Retry, bounded, before giving up.
  Status migrated = store->Migrate();
  for (int attempt = 0; !migrated && attempt < 50; ++attempt) {
    int code = sqlite3_errcode(db) & 0xff;
    if (code != SQLITE_BUSY && code != SQLITE_LOCKED) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20 + 10 * attempt));
    migrated = store->Migrate();
  }
  if (!migrated) return std::unexpected(migrated.error());
  return std::unique_ptr<Store>(std::move(store));
}

SqliteStore::SqliteStore(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}

SqliteStore::~SqliteStore() {
  sqlite3_finalize(find_user_stmt_);
  sqlite3_close(db_);
}

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
  if (auto logged = AppendChangeLocked({0, record.published_at_ms, "cms", "", CmsVersionChangeKey(record.version),
                                        "upsert", CmsVersionPayloadJson(record)});
      !logged) {
    return rollback_with(logged.error());
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

// Written member by member rather than through a nlohmann value: snapshots and
// digests write one per row (JsonObjectWriter gives the same text).
std::string UserPayloadJson(const UserRecord& user) {
  return JsonObjectWriter()
      .Int("created_at_ms", user.created_at_ms)
      .Text("domain", user.domain)
      .Text("ha1_md5", user.ha1_md5)
      .Text("ha1_md5_full", user.ha1_md5_full)
      .Text("ha1_sha256", user.ha1_sha256)
      .Text("ha1_sha256_full", user.ha1_sha256_full)
      .Text("home_pool", user.home_pool)
      .Text("uri", user.uri)
      .Text("username", user.username)
      .Finish();
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
  // On every REGISTER: the statement is prepared once and reused.
  if (find_user_stmt_ == nullptr &&
      sqlite3_prepare_v2(db_, fmt::format("SELECT {} FROM users WHERE username = ? AND domain = ?", kUserColumns).c_str(),
                         -1, &find_user_stmt_, nullptr) != SQLITE_OK) {
    return std::unexpected(SqliteError("finding a user"));
  }
  sqlite3_stmt* stmt = find_user_stmt_;
  BindText(stmt, 1, username);
  BindText(stmt, 2, domain);
  int rc = sqlite3_step(stmt);
  Result<std::optional<UserRecord>> result = std::optional<UserRecord>();
  if (rc == SQLITE_ROW) {
    result = std::optional<UserRecord>(ReadUserRow(stmt));
  } else if (rc != SQLITE_DONE) {
    result = std::unexpected(SqliteError("finding a user"));
  }
  sqlite3_reset(stmt);
  sqlite3_clear_bindings(stmt);
  return result;
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
  return ReadChangesLocked(std::nullopt, after_seq, limit);
}

Result<std::vector<ChangeRecord>> SqliteStore::ReadChangesLocked(std::optional<std::string_view> module,
                                                                 int64_t after_seq, int limit) {
  Statement stmt(db_, module ? "SELECT seq, at_ms, module, home_pool, key, op, payload FROM change_log "
                               "WHERE module = ?3 AND seq > ?1 ORDER BY seq LIMIT ?2"
                             : "SELECT seq, at_ms, module, home_pool, key, op, payload FROM change_log "
                               "WHERE seq > ?1 ORDER BY seq LIMIT ?2");
  if (!stmt.ok()) return std::unexpected(SqliteError("reading the change log"));
  sqlite3_bind_int64(stmt.get(), 1, after_seq);
  sqlite3_bind_int(stmt.get(), 2, limit);
  if (module) BindText(stmt.get(), 3, std::string(*module));
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

// ---- User data and conference data ------------------------------------------------

namespace {

using nlohmann::json;

// Binds large blobs without copying them; the bytes must outlive the step.
struct Blob {
  std::string_view bytes;
};

void Bind(sqlite3_stmt* stmt, int index, std::string_view value) {
  sqlite3_bind_text(stmt, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
}
void Bind(sqlite3_stmt* stmt, int index, int64_t value) { sqlite3_bind_int64(stmt, index, value); }
void Bind(sqlite3_stmt* stmt, int index, const Blob& blob) {
  // A null pointer would bind SQL NULL; an empty file is an empty blob.
  sqlite3_bind_blob64(stmt, index, blob.bytes.empty() ? "" : blob.bytes.data(), blob.bytes.size(), SQLITE_STATIC);
}

template <typename... Args>
void BindAll(sqlite3_stmt* stmt, const Args&... args) {
  int index = 0;
  (Bind(stmt, ++index, args), ...);
}

// Prepares, binds and steps one statement that returns no rows; the SQLite result
// code (SQLITE_DONE on success). sqlite3_errmsg() still describes a failure after.
template <typename... Args>
int ExecuteOnce(sqlite3* db, const char* sql, const Args&... args) {
  Statement stmt(db, sql);
  if (!stmt.ok()) return SQLITE_ERROR;
  BindAll(stmt.get(), args...);
  return sqlite3_step(stmt.get());
}

constexpr const char* kMeetingColumns =
    "id, organizer, home_pool, subject, start_ms, end_ms, attendees, pin, lobby, state, created_ms, updated_ms";

Result<MeetingRecord> ReadMeetingRow(sqlite3_stmt* stmt) {
  MeetingRecord meeting;
  meeting.id = ColumnText(stmt, 0);
  meeting.organizer = ColumnText(stmt, 1);
  meeting.home_pool = ColumnText(stmt, 2);
  meeting.subject = ColumnText(stmt, 3);
  meeting.start_ms = sqlite3_column_int64(stmt, 4);
  meeting.end_ms = sqlite3_column_int64(stmt, 5);
  auto attendees = ParseStringList(ColumnText(stmt, 6), "attendee list of meeting " + meeting.id);
  if (!attendees) return std::unexpected(attendees.error());
  meeting.attendees = std::move(*attendees);
  meeting.pin = ColumnText(stmt, 7);
  auto lobby = ParseLobbyPolicy(ColumnText(stmt, 8));
  auto state = ParseMeetingState(ColumnText(stmt, 9));
  if (!lobby || !state) {
    return MakeError(ErrorCode::kCorruption, fmt::format("meeting {} has an unknown lobby policy or state", meeting.id));
  }
  meeting.lobby = *lobby;
  meeting.state = *state;
  meeting.created_ms = sqlite3_column_int64(stmt, 10);
  meeting.updated_ms = sqlite3_column_int64(stmt, 11);
  return meeting;
}

constexpr const char* kContentInfoColumns = "meeting_id, name, size, sha256, home_pool, uploaded_ms";

ContentInfo ReadContentInfoRow(sqlite3_stmt* stmt) {
  return ContentInfo{ColumnText(stmt, 0), ColumnText(stmt, 1), sqlite3_column_int64(stmt, 2),
                     ColumnText(stmt, 3), ColumnText(stmt, 4), sqlite3_column_int64(stmt, 5)};
}

}  // namespace

std::string_view PrivacyPolicyName(PrivacyPolicy policy) {
  switch (policy) {
    case PrivacyPolicy::kAllowContacts: return "allow-contacts";
    case PrivacyPolicy::kAllowAll: return "allow-all";
    case PrivacyPolicy::kAllowListed: return "allow-listed";
  }
  return "allow-contacts";
}

std::optional<PrivacyPolicy> ParsePrivacyPolicy(std::string_view name) {
  for (PrivacyPolicy policy : {PrivacyPolicy::kAllowContacts, PrivacyPolicy::kAllowAll, PrivacyPolicy::kAllowListed}) {
    if (PrivacyPolicyName(policy) == name) return policy;
  }
  return std::nullopt;
}

std::string_view LobbyPolicyName(LobbyPolicy policy) {
  switch (policy) {
    case LobbyPolicy::kOpen: return "open";
    case LobbyPolicy::kOrganizerAdmits: return "organizer-admits";
    case LobbyPolicy::kAttendeesOnly: return "attendees-only";
  }
  return "attendees-only";
}

std::optional<LobbyPolicy> ParseLobbyPolicy(std::string_view name) {
  for (LobbyPolicy policy : {LobbyPolicy::kOpen, LobbyPolicy::kOrganizerAdmits, LobbyPolicy::kAttendeesOnly}) {
    if (LobbyPolicyName(policy) == name) return policy;
  }
  return std::nullopt;
}

std::string_view MeetingStateName(MeetingState state) {
  return state == MeetingState::kCancelled ? "cancelled" : "scheduled";
}

std::optional<MeetingState> ParseMeetingState(std::string_view name) {
  if (name == "scheduled") return MeetingState::kScheduled;
  if (name == "cancelled") return MeetingState::kCancelled;
  return std::nullopt;
}

namespace {

// Whether `list` names `watcher` itself or the domain after its '@'.
bool ListNames(const std::vector<std::string>& list, std::string_view watcher) {
  std::string_view domain;
  if (auto at = watcher.rfind('@'); at != std::string_view::npos) domain = watcher.substr(at + 1);
  return std::any_of(list.begin(), list.end(),
                     [&](const std::string& entry) { return entry == watcher || (!domain.empty() && entry == domain); });
}

}  // namespace

bool PresencePolicy::Blocks(std::string_view watcher) const {
  return watcher != owner && ListNames(privacy.block, watcher);
}

bool PresencePolicy::Allows(std::string_view watcher) const {
  if (watcher == owner) return true;
  if (Blocks(watcher)) return false;
  switch (privacy.policy) {
    case PrivacyPolicy::kAllowAll: return true;
    case PrivacyPolicy::kAllowListed: return ListNames(privacy.allow, watcher);
    case PrivacyPolicy::kAllowContacts:
      return ListNames(privacy.allow, watcher) || std::binary_search(contacts.begin(), contacts.end(), watcher);
  }
  return false;
}

std::string ContactChangeKey(std::string_view owner, std::string_view contact) {
  return fmt::format("{}#contact:{}", owner, contact);
}
std::string ContactGroupChangeKey(std::string_view owner, std::string_view name) {
  return fmt::format("{}#group:{}", owner, name);
}
std::string PresenceNoteChangeKey(std::string_view owner) { return fmt::format("{}#note", owner); }
std::string PrivacyChangeKey(std::string_view owner) { return fmt::format("{}#privacy", owner); }
std::string MeetingChangeKey(std::string_view id) { return fmt::format("meeting:{}", id); }
std::string ContentChangeKey(std::string_view meeting_id, std::string_view name) {
  return fmt::format("content:{}/{}", meeting_id, name);
}

// The row kinds an owner has many of, written as UserPayloadJson is.
std::string ContactPayloadJson(const ContactRecord& contact) {
  return JsonObjectWriter()
      .Text("contact", contact.contact)
      .Text("display_name", contact.display_name)
      .List("groups", contact.groups)
      .Text("home_pool", contact.home_pool)
      .Text("owner", contact.owner)
      .Int("updated_at_ms", contact.updated_at_ms)
      .Finish();
}

std::string ContactGroupPayloadJson(const ContactGroupRecord& group) {
  return JsonObjectWriter()
      .Int("created_at_ms", group.created_at_ms)
      .Text("home_pool", group.home_pool)
      .Text("name", group.name)
      .Text("owner", group.owner)
      .Finish();
}

std::string PresenceNotePayloadJson(const PresenceNoteRecord& note) {
  return JsonObjectWriter()
      .Text("home_pool", note.home_pool)
      .Text("note", note.note)
      .Text("owner", note.owner)
      .Int("updated_at_ms", note.updated_at_ms)
      .Finish();
}

std::string PrivacyPayloadJson(const PrivacySettings& privacy) {
  return Dump(json{{"owner", privacy.owner},
                   {"policy", PrivacyPolicyName(privacy.policy)},
                   {"allow", privacy.allow},
                   {"block", privacy.block},
                   {"home_pool", privacy.home_pool},
                   {"updated_at_ms", privacy.updated_at_ms}});
}

std::string MeetingPayloadJson(const MeetingRecord& meeting) {
  return Dump(json{{"id", meeting.id},
                   {"organizer", meeting.organizer},
                   {"home_pool", meeting.home_pool},
                   {"subject", meeting.subject},
                   {"start_ms", meeting.start_ms},
                   {"end_ms", meeting.end_ms},
                   {"attendees", meeting.attendees},
                   {"pin", meeting.pin},
                   {"lobby", LobbyPolicyName(meeting.lobby)},
                   {"state", MeetingStateName(meeting.state)},
                   {"created_ms", meeting.created_ms},
                   {"updated_ms", meeting.updated_ms}});
}

std::string ContentInfoJson(const ContentInfo& info) {
  return Dump(json{{"meeting_id", info.meeting_id},
                   {"name", info.name},
                   {"size", info.size},
                   {"sha256", info.sha256},
                   {"home_pool", info.home_pool},
                   {"uploaded_ms", info.uploaded_ms}});
}

std::string ContentPayloadJson(const ContentInfo& info, std::string_view bytes) {
  return Dump(json{{"meeting_id", info.meeting_id},
                   {"name", info.name},
                   {"size", info.size},
                   {"sha256", info.sha256},
                   {"home_pool", info.home_pool},
                   {"uploaded_ms", info.uploaded_ms},
                   {"content_base64", Base64(bytes)}});
}

// Hand-written: none of the libraries tandem uses offers a non-throwing check.
bool IsValidUtf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
    unsigned char lead = byte(i);
    if (lead < 0x80) {
      ++i;
      continue;
    }
    size_t length;
    uint32_t code_point;
    uint32_t minimum;
    if ((lead & 0xe0) == 0xc0) {
      length = 2, code_point = lead & 0x1f, minimum = 0x80;
    } else if ((lead & 0xf0) == 0xe0) {
      length = 3, code_point = lead & 0x0f, minimum = 0x800;
    } else if ((lead & 0xf8) == 0xf0) {
      length = 4, code_point = lead & 0x07, minimum = 0x10000;
    } else {
      return false;
    }
    if (i + length > text.size()) return false;
    for (size_t k = 1; k < length; ++k) {
      if ((byte(i + k) & 0xc0) != 0x80) return false;
      code_point = (code_point << 6) | (byte(i + k) & 0x3f);
    }
    if (code_point < minimum || code_point > 0x10ffff || (code_point >= 0xd800 && code_point <= 0xdfff)) return false;
    i += length;
  }
  return true;
}

bool IsValidContentName(std::string_view name) {
  if (name.empty() || name.size() > 255 || name == "." || name == ".." || !IsValidUtf8(name)) return false;
  return std::none_of(name.begin(), name.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f || c == '/' || c == '\\';
  });
}

Status SqliteStore::InReadTransaction(const std::function<Status()>& body) {
  std::lock_guard lock(mu_);
  if (auto s = Exec("BEGIN"); !s) return s;
  Status result = body();
  if (!result) {
    Exec("ROLLBACK");
    return result;
  }
  return Exec("COMMIT");
}

Result<std::string> SqliteStore::UserHomePoolLocked(const std::string& uri) {
  Statement find(db_, "SELECT home_pool FROM users WHERE uri = ?");
  if (!find.ok()) return std::unexpected(SqliteError("finding a user"));
  BindAll(find.get(), uri);
  int rc = sqlite3_step(find.get());
  if (rc == SQLITE_DONE) return MakeError(ErrorCode::kNotFound, fmt::format("user {} is not provisioned", uri));
  if (rc != SQLITE_ROW) return std::unexpected(SqliteError("finding a user"));
  return ColumnText(find.get(), 0);
}

Status SqliteStore::UpsertContact(const ContactRecord& contact) {
  if (contact.contact.empty()) return MakeError(ErrorCode::kInvalidArgument, "the contact URI is empty");
  if (contact.contact == contact.owner) {
    return MakeError(ErrorCode::kInvalidArgument, fmt::format("{} cannot be a contact of itself", contact.owner));
  }
  if (auto s = CheckText("the contact URI", contact.contact); !s) return s;
  if (auto s = CheckText("the display name", contact.display_name); !s) return s;
  if (auto s = CheckTexts("a group name", contact.groups); !s) return s;
  return InWriteTransaction([&]() -> Status {
    auto home_pool = UserHomePoolLocked(contact.owner);
    if (!home_pool) return std::unexpected(home_pool.error());
    ContactRecord row = contact;
    row.groups = WithoutDuplicates(contact.groups);
    row.home_pool = *home_pool;
    row.updated_at_ms = NowUnixMillis();
    for (const std::string& group : row.groups) {
      Statement find(db_, "SELECT 1 FROM contact_groups WHERE owner = ? AND name = ?");
      if (!find.ok()) return std::unexpected(SqliteError("reading contact groups"));
      BindAll(find.get(), row.owner, group);
      int rc = sqlite3_step(find.get());
      if (rc == SQLITE_DONE) {
        return MakeError(ErrorCode::kFailedPrecondition,
                         fmt::format("{} has no contact group '{}'; add the group first", row.owner, group));
      }
      if (rc != SQLITE_ROW) return std::unexpected(SqliteError("reading contact groups"));
    }
    if (ExecuteOnce(db_,
                    "INSERT OR REPLACE INTO contacts(owner, contact, display_name, groups, home_pool, updated_at_ms) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    row.owner, row.contact, row.display_name, Dump(json(row.groups)), row.home_pool,
                    row.updated_at_ms) != SQLITE_DONE) {
      return std::unexpected(SqliteError("writing a contact"));
    }
    return AppendChangeLocked({0, row.updated_at_ms, "user", row.home_pool, ContactChangeKey(row.owner, row.contact),
                               "upsert", ContactPayloadJson(row)});
  });
}

Status SqliteStore::RemoveContact(const std::string& owner, const std::string& contact) {
  return InWriteTransaction([&]() -> Status {
    auto home_pool = UserHomePoolLocked(owner);
    if (!home_pool) return std::unexpected(home_pool.error());
    if (ExecuteOnce(db_, "DELETE FROM contacts WHERE owner = ? AND contact = ?", owner, contact) != SQLITE_DONE) {
      return std::unexpected(SqliteError("removing a contact"));
    }
    if (sqlite3_changes(db_) == 0) {
      return MakeError(ErrorCode::kNotFound, fmt::format("{} has no contact {}", owner, contact));
    }
    return AppendChangeLocked({0, NowUnixMillis(), "user", *home_pool, ContactChangeKey(owner, contact), "delete", ""});
  });
}

Result<std::vector<ContactRecord>> SqliteStore::ListContactsLocked(const std::string& owner) {
  Statement stmt(db_,
                 "SELECT owner, contact, display_name, groups, home_pool, updated_at_ms FROM contacts WHERE owner = ? "
                 "ORDER BY contact");
  if (!stmt.ok()) return std::unexpected(SqliteError("listing contacts"));
  BindAll(stmt.get(), owner);
  std::vector<ContactRecord> contacts;
  int rc;
  while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) {
    ContactRecord contact{ColumnText(stmt.get(), 0), ColumnText(stmt.get(), 1), ColumnText(stmt.get(), 2), {},
                          ColumnText(stmt.get(), 4), sqlite3_column_int64(stmt.get(), 5)};
    auto groups = ParseStringList(ColumnText(stmt.get(), 3), "group list of contact " + contact.contact);
    if (!groups) return std::unexpected(groups.error());
    contact.groups = std::move(*groups);
    contacts.push_back(std::move(contact));
  }
  if (rc != SQLITE_DONE) return std::unexpected(SqliteError("listing contacts"));
  return contacts;
}

Result<std::vector<ContactRecord>> SqliteStore::ListContacts(const std::string& owner) {
  std::vector<ContactRecord> contacts;
  auto read = InReadTransaction([&]() -> Status {
    if (auto home_pool = UserHomePoolLocked(owner); !home_pool) return std::unexpected(home_pool.error());
    auto listed = ListContactsLocked(owner);
    if (!listed) return std::unexpected(listed.error());
    contacts = std::move(*listed);
    return OkStatus();
  });
  if (!read) return std::unexpected(read.error());
  return contacts;
}

Status SqliteStore::AddContactGroup(const std::string& owner, const std::string& name) {
  if (name.empty()) return MakeError(ErrorCode::kInvalidArgument, "the group name is empty");
  if (auto s = CheckText("the group name", name); !s) return s;
  return InWriteTransaction([&]() -> Status {
    auto home_pool = UserHomePoolLocked(owner);
    if (!home_pool) return std::unexpected(home_pool.error());
    ContactGroupRecord group{owner, name, *home_pool, NowUnixMillis()};
    int rc = ExecuteOnce(db_, "INSERT INTO contact_groups(owner, name, home_pool, created_at_ms) VALUES (?, ?, ?, ?)",
                         group.owner, group.name, group.home_pool, group.created_at_ms);
    if (rc == SQLITE_CONSTRAINT) {
      return MakeError(ErrorCode::kAlreadyExists, fmt::format("{} already has a contact group '{}'", owner, name));
    }
    if (rc != SQLITE_DONE) return std::unexpected(SqliteError("adding a contact group"));
    return AppendChangeLocked({0, group.created_at_ms, "user", group.home_pool, ContactGroupChangeKey(owner, name),
                               "upsert", ContactGroupPayloadJson(group)});
  });
}

Status SqliteStore::RemoveContactGroup(const std::string& owner, const std::string& name) {
  return InWriteTransaction([&]() -> Status {
    auto home_pool = UserHomePoolLocked(owner);
    if (!home_pool) return std::unexpected(home_pool.error());
    {
      Statement members(db_,
                        "SELECT COUNT(*) FROM contacts, json_each(contacts.groups) "
                        "WHERE contacts.owner = ? AND json_each.value = ?");
      if (!members.ok()) return std::unexpected(SqliteError("reading contact groups"));
      BindAll(members.get(), owner, name);
      if (sqlite3_step(members.get()) != SQLITE_ROW) return std::unexpected(SqliteError("reading contact groups"));
      int64_t count = sqlite3_column_int64(members.get(), 0);
      if (count > 0) {
        return MakeError(ErrorCode::kFailedPrecondition,
                         fmt::format("contact group '{}' of {} still holds {} contact{}; take them out of it first",
                                     name, owner, count, count == 1 ? "" : "s"));
      }
    }
    if (ExecuteOnce(db_, "DELETE FROM contact_groups WHERE owner = ? AND name = ?", owner, name) != SQLITE_DONE) {
      return std::unexpected(SqliteError("removing a contact group"));
    }
    if (sqlite3_changes(db_) == 0) {
      return MakeError(ErrorCode::kNotFound, fmt::format("{} has no contact group '{}'", owner, name));
    }
    return AppendChangeLocked(
        {0, NowUnixMillis(), "user", *home_pool, ContactGroupChangeKey(owner, name), "delete", ""});
  });
}

Result<std::vector<ContactGroupRecord>> SqliteStore::ListContactGroups(const std::string& owner) {
  std::vector<ContactGroupRecord> groups;
  auto read = InReadTransaction([&]() -> Status {
    if (auto home_pool = UserHomePoolLocked(owner); !home_pool) return std::unexpected(home_pool.error());
    Statement stmt(db_, "SELECT owner, name, home_pool, created_at_ms FROM contact_groups WHERE owner = ? ORDER BY name");
    if (!stmt.ok()) return std::unexpected(SqliteError("listing contact groups"));
    BindAll(stmt.get(), owner);
    int rc;
    while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) {
      groups.push_back(ContactGroupRecord{ColumnText(stmt.get(), 0), ColumnText(stmt.get(), 1),
                                          ColumnText(stmt.get(), 2), sqlite3_column_int64(stmt.get(), 3)});
    }
    if (rc != SQLITE_DONE) return std::unexpected(SqliteError("listing contact groups"));
    return OkStatus();
  });
  if (!read) return std::unexpected(read.error());
  return groups;
}

Status SqliteStore::SetPresenceNote(const std::string& owner, const std::string& note) {
  if (auto s = CheckText("the presence note", note); !s) return s;
  return InWriteTransaction([&]() -> Status {
    auto home_pool = UserHomePoolLocked(owner);
    if (!home_pool) return std::unexpected(home_pool.error());
    PresenceNoteRecord row{owner, note, *home_pool, NowUnixMillis()};
    if (ExecuteOnce(db_,
                    "INSERT OR REPLACE INTO presence_notes(owner, note, home_pool, updated_at_ms) VALUES (?, ?, ?, ?)",
                    row.owner, row.note, row.home_pool, row.updated_at_ms) != SQLITE_DONE) {
      return std::unexpected(SqliteError("writing a presence note"));
    }
    return AppendChangeLocked({0, row.updated_at_ms, "user", row.home_pool, PresenceNoteChangeKey(owner), "upsert",
                               PresenceNotePayloadJson(row)});
  });
}

Result<PresenceNoteRecord> SqliteStore::GetPresenceNote(const std::string& owner) {
  PresenceNoteRecord note{owner, "", "", 0};
  auto read = InReadTransaction([&]() -> Status {
    auto home_pool = UserHomePoolLocked(owner);
    if (!home_pool) return std::unexpected(home_pool.error());
    note.home_pool = *home_pool;
    Statement stmt(db_, "SELECT note, home_pool, updated_at_ms FROM presence_notes WHERE owner = ?");
    if (!stmt.ok()) return std::unexpected(SqliteError("reading a presence note"));
    BindAll(stmt.get(), owner);
    int rc = sqlite3_step(stmt.get());
    if (rc == SQLITE_ROW) {
      note.note = ColumnText(stmt.get(), 0);
      note.home_pool = ColumnText(stmt.get(), 1);
      note.updated_at_ms = sqlite3_column_int64(stmt.get(), 2);
    } else if (rc != SQLITE_DONE) {
      return std::unexpected(SqliteError("reading a presence note"));
    }
    return OkStatus();
  });
  if (!read) return std::unexpected(read.error());
  return note;
}

Result<PrivacySettings> SqliteStore::GetPrivacyLocked(const std::string& owner) {
  PrivacySettings privacy;
  privacy.owner = owner;
  Statement stmt(db_, "SELECT policy, allow_list, block_list, home_pool, updated_at_ms FROM privacy_settings WHERE owner = ?");
  if (!stmt.ok()) return std::unexpected(SqliteError("reading privacy settings"));
  BindAll(stmt.get(), owner);
  int rc = sqlite3_step(stmt.get());
  if (rc == SQLITE_DONE) return privacy;
  if (rc != SQLITE_ROW) return std::unexpected(SqliteError("reading privacy settings"));
  auto policy = ParsePrivacyPolicy(ColumnText(stmt.get(), 0));
  if (!policy) return MakeError(ErrorCode::kCorruption, fmt::format("privacy policy of {} is unknown", owner));
  auto allow = ParseStringList(ColumnText(stmt.get(), 1), "allow list of " + owner);
  if (!allow) return std::unexpected(allow.error());
  auto block = ParseStringList(ColumnText(stmt.get(), 2), "block list of " + owner);
  if (!block) return std::unexpected(block.error());
  privacy.policy = *policy;
  privacy.allow = std::move(*allow);
  privacy.block = std::move(*block);
  privacy.home_pool = ColumnText(stmt.get(), 3);
  privacy.updated_at_ms = sqlite3_column_int64(stmt.get(), 4);
  return privacy;
}

Result<PrivacySettings> SqliteStore::UpdatePrivacy(const std::string& owner, const PrivacyUpdate& update) {
  if (update.allow) {
    if (auto s = CheckTexts("an allow-list entry", *update.allow); !s) return std::unexpected(s.error());
  }
  if (update.block) {
    if (auto s = CheckTexts("a block-list entry", *update.block); !s) return std::unexpected(s.error());
  }
  PrivacySettings privacy;
  auto written = InWriteTransaction([&]() -> Status {
    auto home_pool = UserHomePoolLocked(owner);
    if (!home_pool) return std::unexpected(home_pool.error());
    auto current = GetPrivacyLocked(owner);
    if (!current) return std::unexpected(current.error());
    privacy = std::move(*current);
    if (update.policy) privacy.policy = *update.policy;
    if (update.allow) privacy.allow = WithoutDuplicates(*update.allow);
    if (update.block) privacy.block = WithoutDuplicates(*update.block);
    privacy.home_pool = *home_pool;
    privacy.updated_at_ms = NowUnixMillis();
    if (ExecuteOnce(db_,
                    "INSERT OR REPLACE INTO privacy_settings(owner, policy, allow_list, block_list, home_pool, "
                    "updated_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
                    owner, PrivacyPolicyName(privacy.policy), Dump(json(privacy.allow)), Dump(json(privacy.block)),
                    privacy.home_pool, privacy.updated_at_ms) != SQLITE_DONE) {
      return std::unexpected(SqliteError("writing privacy settings"));
    }
    return AppendChangeLocked({0, privacy.updated_at_ms, "user", privacy.home_pool, PrivacyChangeKey(owner), "upsert",
                               PrivacyPayloadJson(privacy)});
  });
  if (!written) return std::unexpected(written.error());
  return privacy;
}

Result<PrivacySettings> SqliteStore::GetPrivacy(const std::string& owner) {
  PrivacySettings privacy;
  auto read = InReadTransaction([&]() -> Status {
    auto home_pool = UserHomePoolLocked(owner);
    if (!home_pool) return std::unexpected(home_pool.error());
    auto current = GetPrivacyLocked(owner);
    if (!current) return std::unexpected(current.error());
    privacy = std::move(*current);
    if (privacy.home_pool.empty()) privacy.home_pool = *home_pool;
    return OkStatus();
  });
  if (!read) return std::unexpected(read.error());
  return privacy;
}

Result<PresencePolicy> SqliteStore::GetPresencePolicy(const std::string& owner) {
  PresencePolicy policy;
  policy.owner = owner;
  auto read = InReadTransaction([&]() -> Status {
    auto home_pool = UserHomePoolLocked(owner);
    if (!home_pool) return std::unexpected(home_pool.error());
    auto privacy = GetPrivacyLocked(owner);
    if (!privacy) return std::unexpected(privacy.error());
    policy.privacy = std::move(*privacy);
    if (policy.privacy.home_pool.empty()) policy.privacy.home_pool = *home_pool;
    Statement stmt(db_, "SELECT contact FROM contacts WHERE owner = ? ORDER BY contact");
    if (!stmt.ok()) return std::unexpected(SqliteError("reading contacts"));
    BindAll(stmt.get(), owner);
    int rc;
    while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) policy.contacts.push_back(ColumnText(stmt.get(), 0));
    if (rc != SQLITE_DONE) return std::unexpected(SqliteError("reading contacts"));
    return OkStatus();
  });
  if (!read) return std::unexpected(read.error());
  return policy;
}

Result<std::optional<MeetingRecord>> SqliteStore::GetMeetingLocked(const std::string& id) {
  Statement stmt(db_, fmt::format("SELECT {} FROM meetings WHERE id = ?", kMeetingColumns).c_str());
  if (!stmt.ok()) return std::unexpected(SqliteError("reading a meeting"));
  BindAll(stmt.get(), id);
  int rc = sqlite3_step(stmt.get());
  if (rc == SQLITE_DONE) return std::optional<MeetingRecord>();
  if (rc != SQLITE_ROW) return std::unexpected(SqliteError("reading a meeting"));
  auto meeting = ReadMeetingRow(stmt.get());
  if (!meeting) return std::unexpected(meeting.error());
  return std::optional<MeetingRecord>(std::move(*meeting));
}

Status SqliteStore::WriteMeetingLocked(const MeetingRecord& meeting, bool insert) {
  std::string sql = fmt::format("{} INTO meetings({}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                insert ? "INSERT" : "INSERT OR REPLACE", kMeetingColumns);
  if (ExecuteOnce(db_, sql.c_str(), meeting.id, meeting.organizer, meeting.home_pool, meeting.subject,
                  meeting.start_ms, meeting.end_ms, Dump(json(meeting.attendees)), meeting.pin,
                  LobbyPolicyName(meeting.lobby), MeetingStateName(meeting.state), meeting.created_ms,
                  meeting.updated_ms) != SQLITE_DONE) {
    return std::unexpected(SqliteError("writing a meeting"));
  }
  return AppendChangeLocked({0, meeting.updated_ms, "conference", meeting.home_pool, MeetingChangeKey(meeting.id),
                             "upsert", MeetingPayloadJson(meeting)});
}

Result<MeetingRecord> SqliteStore::CreateMeeting(const MeetingRecord& meeting) {
  if (auto s = CheckMeeting(meeting); !s) return std::unexpected(s.error());
  MeetingRecord row = meeting;
  auto written = InWriteTransaction([&]() -> Status {
    auto home_pool = UserHomePoolLocked(meeting.organizer);
    if (!home_pool) return std::unexpected(home_pool.error());
    auto existing = GetMeetingLocked(meeting.id);
    if (!existing) return std::unexpected(existing.error());
    if (existing->has_value()) {
      return MakeError(ErrorCode::kAlreadyExists, fmt::format("meeting id {} is already taken", meeting.id));
    }
    row.attendees = WithoutDuplicates(meeting.attendees);
    row.home_pool = *home_pool;
    row.state = MeetingState::kScheduled;
    row.created_ms = row.updated_ms = NowUnixMillis();
    return WriteMeetingLocked(row, /*insert=*/true);
  });
  if (!written) return std::unexpected(written.error());
  return row;
}

Result<MeetingRecord> SqliteStore::UpdateMeeting(const std::string& id, const MeetingUpdate& update) {
  MeetingRecord row;
  auto written = InWriteTransaction([&]() -> Status {
    auto existing = GetMeetingLocked(id);
    if (!existing) return std::unexpected(existing.error());
    auto updated = ApplyMeetingUpdate(std::move(*existing), id, update);
    if (!updated) return std::unexpected(updated.error());
    row = std::move(*updated);
    return WriteMeetingLocked(row, /*insert=*/false);
  });
  if (!written) return std::unexpected(written.error());
  return row;
}

Result<MeetingRecord> SqliteStore::CancelMeeting(const std::string& id) {
  MeetingRecord row;
  auto written = InWriteTransaction([&]() -> Status {
    auto existing = GetMeetingLocked(id);
    if (!existing) return std::unexpected(existing.error());
    if (!existing->has_value()) return MakeError(ErrorCode::kNotFound, fmt::format("meeting {} does not exist", id));
    row = std::move(**existing);
    if (row.state == MeetingState::kCancelled) {
      return MakeError(ErrorCode::kFailedPrecondition, fmt::format("meeting {} is already cancelled", id));
    }
    row.state = MeetingState::kCancelled;
    row.updated_ms = std::max(NowUnixMillis(), row.updated_ms);
    return WriteMeetingLocked(row, /*insert=*/false);
  });
  if (!written) return std::unexpected(written.error());
  return row;
}

Result<std::optional<MeetingRecord>> SqliteStore::GetMeeting(const std::string& id) {
  std::lock_guard lock(mu_);
  return GetMeetingLocked(id);
}

Result<std::vector<MeetingRecord>> SqliteStore::ListMeetings(const MeetingFilter& filter) {
  std::lock_guard lock(mu_);
  std::string sql = fmt::format("SELECT {} FROM meetings WHERE 1", kMeetingColumns);
  if (filter.organizer) sql += " AND organizer = ?";
  if (filter.home_pool) sql += " AND home_pool = ?";
  sql += " ORDER BY start_ms, id";
  Statement stmt(db_, sql.c_str());
  if (!stmt.ok()) return std::unexpected(SqliteError("listing meetings"));
  int index = 0;
  if (filter.organizer) Bind(stmt.get(), ++index, *filter.organizer);
  if (filter.home_pool) Bind(stmt.get(), ++index, *filter.home_pool);
  std::vector<MeetingRecord> meetings;
  int rc;
  while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) {
    auto meeting = ReadMeetingRow(stmt.get());
    if (!meeting) return std::unexpected(meeting.error());
    meetings.push_back(std::move(*meeting));
  }
  if (rc != SQLITE_DONE) return std::unexpected(SqliteError("listing meetings"));
  return meetings;
}

Result<ContentInfo> SqliteStore::PutContent(const ContentInfo& info, std::string_view bytes) {
  if (auto checked = CheckContentInfo(info); !checked) return std::unexpected(checked.error());
  ContentInfo stored = info;
  auto written = InWriteTransaction([&]() -> Status {
    auto meeting = GetMeetingLocked(info.meeting_id);
    if (!meeting) return std::unexpected(meeting.error());
    if (!meeting->has_value()) {
      return MakeError(ErrorCode::kNotFound, fmt::format("meeting {} does not exist", info.meeting_id));
    }
    if ((*meeting)->state == MeetingState::kCancelled) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       fmt::format("meeting {} is cancelled; content cannot be added", info.meeting_id));
    }
    stored.size = static_cast<int64_t>(bytes.size());
    stored.home_pool = (*meeting)->home_pool;
    stored.uploaded_ms = NowUnixMillis();
    if (ExecuteOnce(db_,
                    "INSERT OR REPLACE INTO meeting_content(meeting_id, name, size, sha256, home_pool, uploaded_ms, "
                    "content) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    stored.meeting_id, stored.name, stored.size, stored.sha256, stored.home_pool,
                    stored.uploaded_ms, Blob{bytes}) != SQLITE_DONE) {
      return std::unexpected(SqliteError("writing meeting content"));
    }
    return AppendChangeLocked({0, stored.uploaded_ms, "conference", stored.home_pool,
                               ContentChangeKey(stored.meeting_id, stored.name), "upsert",
                               ContentPayloadJson(stored, bytes)});
  });
  if (!written) return std::unexpected(written.error());
  return stored;
}

Result<std::optional<ContentRecord>> SqliteStore::GetContent(const std::string& meeting_id, const std::string& name) {
  std::lock_guard lock(mu_);
  Statement stmt(db_, fmt::format("SELECT {}, content FROM meeting_content WHERE meeting_id = ? AND name = ?",
                                  kContentInfoColumns)
                          .c_str());
  if (!stmt.ok()) return std::unexpected(SqliteError("reading meeting content"));
  BindAll(stmt.get(), meeting_id, name);
  int rc = sqlite3_step(stmt.get());
  if (rc == SQLITE_DONE) return std::optional<ContentRecord>();
  if (rc != SQLITE_ROW) return std::unexpected(SqliteError("reading meeting content"));
  ContentRecord content{ReadContentInfoRow(stmt.get()), {}};
  const auto* bytes = static_cast<const char*>(sqlite3_column_blob(stmt.get(), 6));
  content.bytes.assign(bytes ? bytes : "", static_cast<size_t>(sqlite3_column_bytes(stmt.get(), 6)));
  return std::optional<ContentRecord>(std::move(content));
}

Result<std::vector<ContentInfo>> SqliteStore::ListContent(const std::string& meeting_id) {
  std::vector<ContentInfo> files;
  auto read = InReadTransaction([&]() -> Status {
    auto meeting = GetMeetingLocked(meeting_id);
    if (!meeting) return std::unexpected(meeting.error());
    if (!meeting->has_value()) return MakeError(ErrorCode::kNotFound, fmt::format("meeting {} does not exist", meeting_id));
    Statement stmt(db_, fmt::format("SELECT {} FROM meeting_content WHERE meeting_id = ? ORDER BY name",
                                    kContentInfoColumns)
                            .c_str());
    if (!stmt.ok()) return std::unexpected(SqliteError("listing meeting content"));
    BindAll(stmt.get(), meeting_id);
    int rc;
    while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) files.push_back(ReadContentInfoRow(stmt.get()));
    if (rc != SQLITE_DONE) return std::unexpected(SqliteError("listing meeting content"));
    return OkStatus();
  });
  if (!read) return std::unexpected(read.error());
  return files;
}

Status SqliteStore::RenewLease(const LeaseRecord& lease) {
  std::lock_guard lock(mu_);
  int rc = ExecuteOnce(db_,
                       "INSERT INTO pool_leases(server_id, pool, renewed_at_ms, expires_at_ms) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT(server_id) DO UPDATE SET pool = excluded.pool, renewed_at_ms = excluded.renewed_at_ms, "
                       "expires_at_ms = excluded.expires_at_ms",
                       lease.server_id, lease.pool, lease.renewed_at_ms, lease.expires_at_ms);
  if (rc != SQLITE_DONE) return std::unexpected(SqliteError("renewing a lease"));
  return OkStatus();
}

Status SqliteStore::ReleaseLease(const std::string& server_id) {
  std::lock_guard lock(mu_);
  if (ExecuteOnce(db_, "DELETE FROM pool_leases WHERE server_id = ?", server_id) != SQLITE_DONE) {
    return std::unexpected(SqliteError("releasing a lease"));
  }
  return OkStatus();
}

Result<std::vector<LeaseRecord>> SqliteStore::ListLeases(const std::string& pool) {
  std::lock_guard lock(mu_);
  Statement stmt(db_, "SELECT server_id, pool, renewed_at_ms, expires_at_ms FROM pool_leases WHERE pool = ? "
                      "ORDER BY server_id");
  if (!stmt.ok()) return std::unexpected(SqliteError("listing leases"));
  BindText(stmt.get(), 1, pool);
  std::vector<LeaseRecord> leases;
  int rc;
  while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) {
    leases.push_back(LeaseRecord{ColumnText(stmt.get(), 0), ColumnText(stmt.get(), 1),
                                 sqlite3_column_int64(stmt.get(), 2), sqlite3_column_int64(stmt.get(), 3)});
  }
  if (rc != SQLITE_DONE) return std::unexpected(SqliteError("listing leases"));
  return leases;
}

// ---- Replication ------------------------------------------------------------------

namespace {

std::string SqlitePlaceholder(int) { return "?"; }

void Bind(sqlite3_stmt* stmt, int index, const SqlValue& value) {
  if (const auto* text = std::get_if<std::string>(&value)) {
    Bind(stmt, index, std::string_view(*text));
  } else if (const auto* number = std::get_if<int64_t>(&value)) {
    Bind(stmt, index, *number);
  } else {
    Bind(stmt, index, Blob{std::get<SqlBytes>(value).bytes});
  }
}

// Binds without copying (SQLite copies TRANSIENT text, a snapshot's millions of
// values); `value` must outlive the step.
void BindBorrowed(sqlite3_stmt* stmt, int index, const SqlValue& value) {
  if (const auto* text = std::get_if<std::string>(&value)) {
    sqlite3_bind_text(stmt, index, text->data(), static_cast<int>(text->size()), SQLITE_STATIC);
  } else {
    Bind(stmt, index, value);
  }
}

// Reads the current row's columns as `types` (replication.h) says into `*row`,
// reusing the buffers of the row read before (a scan reads millions).
void ReadColumns(sqlite3_stmt* stmt, const char* types, SqlRow* row) {
  row->resize(std::strlen(types));
  for (size_t i = 0; i < row->size(); ++i) {
    SqlValue& value = (*row)[i];
    int column = static_cast<int>(i);
    if (types[i] == 'i') {
      value = static_cast<int64_t>(sqlite3_column_int64(stmt, column));
      continue;
    }
    const char* data;
    std::string* target;
    if (types[i] == 't') {
      data = reinterpret_cast<const char*>(sqlite3_column_text(stmt, column));
      auto* text = std::get_if<std::string>(&value);
      target = text ? text : &value.emplace<std::string>();
    } else {
      data = static_cast<const char*>(sqlite3_column_blob(stmt, column));
      auto* bytes = std::get_if<SqlBytes>(&value);
      target = bytes ? &bytes->bytes : &value.emplace<SqlBytes>().bytes;
    }
    target->assign(data ? data : "", static_cast<size_t>(sqlite3_column_bytes(stmt, column)));
  }
}

class SqliteCursor final : public RowCursor {
 public:
  SqliteCursor(sqlite3* db, const SqlQuery& query, const char* types, std::function<Error()> error)
      : stmt_(db, query.sql.c_str()), types_(types), error_(std::move(error)) {
    for (size_t i = 0; i < query.params.size() && stmt_.ok(); ++i) Bind(stmt_.get(), static_cast<int>(i) + 1, query.params[i]);
  }
  bool ok() const { return stmt_.ok(); }
  Result<bool> Next(SqlRow* row) override {
    int rc = sqlite3_step(stmt_.get());
    if (rc == SQLITE_DONE) return false;
    if (rc != SQLITE_ROW) return std::unexpected(error_());
    ReadColumns(stmt_.get(), types_, row);
    return true;
  }

 private:
  Statement stmt_;
  const char* types_;
  std::function<Error()> error_;
};

constexpr const char* kImportColumns =
    "source_pool, module, applied_seq, applied_at_ms, source_at_ms, snapshot_seq";

ImportProgress ReadImportRow(sqlite3_stmt* stmt) {
  return ImportProgress{ColumnText(stmt, 0),           ColumnText(stmt, 1),           sqlite3_column_int64(stmt, 2),
                        sqlite3_column_int64(stmt, 3), sqlite3_column_int64(stmt, 4), sqlite3_column_int64(stmt, 5)};
}

}  // namespace

// The write side of replication inside InWriteTransaction (mu_ held): BEGIN IMMEDIATE
// already keeps every other writer out, so the progress row needs no lock of its own.
class SqliteReplicationTx final : public ReplicationTx {
 public:
  explicit SqliteReplicationTx(SqliteStore& store) : store_(store) {}

  Result<ImportProgress> LockImportProgress(std::string_view source_pool, std::string_view module) override {
    Statement stmt(store_.db_,
                   fmt::format("SELECT {} FROM import_progress WHERE source_pool = ? AND module = ?", kImportColumns)
                       .c_str());
    if (!stmt.ok()) return std::unexpected(store_.SqliteError("reading import progress"));
    BindAll(stmt.get(), source_pool, module);
    int rc = sqlite3_step(stmt.get());
    if (rc == SQLITE_ROW) return ReadImportRow(stmt.get());
    if (rc != SQLITE_DONE) return std::unexpected(store_.SqliteError("reading import progress"));
    return ImportProgress{std::string(source_pool), std::string(module)};
  }

  Status SaveImportProgress(const ImportProgress& p) override {
    if (ExecuteOnce(store_.db_,
                    "INSERT OR REPLACE INTO import_progress(source_pool, module, applied_seq, applied_at_ms, "
                    "source_at_ms, snapshot_seq) VALUES (?, ?, ?, ?, ?, ?)",
                    p.source_pool, p.module, p.applied_seq, p.applied_at_ms, p.source_at_ms,
                    p.snapshot_seq) != SQLITE_DONE) {
      return std::unexpected(store_.SqliteError("writing import progress"));
    }
    return OkStatus();
  }

  Status Upsert(const ReplicatedTable& table, std::span<const RowWrite* const> rows) override {
    size_t grouped = rows.size() / kRowsPerInsert * kRowsPerInsert;
    if (grouped > 0) {
      if (auto s = StepEach(UpsertSql(table, kRowsPerInsert, SqlitePlaceholder), rows.first(grouped), kRowsPerInsert,
                            table.name);
          !s) {
        return s;
      }
    }
    return StepEach(UpsertSql(table, 1, SqlitePlaceholder), rows.subspan(grouped), 1, table.name);
  }
  Status Remove(const ReplicatedTable& table, std::span<const RowWrite* const> rows) override {
    return StepEach(DeleteSql(table, SqlitePlaceholder), rows, 1, table.name);
  }
  Status RemovePool(const ReplicatedTable& table, std::string_view home_pool) override {
    if (ExecuteOnce(store_.db_, DeletePoolSql(table, SqlitePlaceholder).c_str(), home_pool) != SQLITE_DONE) {
      return std::unexpected(store_.SqliteError(fmt::format("clearing {} for a snapshot", table.name)));
    }
    return OkStatus();
  }

 private:
  // Rows per INSERT for a long run of rows: SQLite's work per statement run, paid a
  // million times over by a snapshot, then shrinks by as much.
  static constexpr size_t kRowsPerInsert = 32;

  // One statement prepared once and run for every `per_step` rows (a snapshot chunk
  // is thousands).
  Status StepEach(const std::string& sql, std::span<const RowWrite* const> rows, size_t per_step, const char* table) {
    Statement stmt(store_.db_, sql.c_str());
    if (!stmt.ok()) return std::unexpected(store_.SqliteError(fmt::format("writing {}", table)));
    for (size_t first = 0; first < rows.size(); first += per_step) {
      sqlite3_reset(stmt.get());
      int index = 0;
      for (const RowWrite* row : rows.subspan(first, per_step)) {
        for (const SqlValue& value : row->values) BindBorrowed(stmt.get(), ++index, value);
      }
      if (sqlite3_step(stmt.get()) != SQLITE_DONE) {
        return std::unexpected(store_.SqliteError(
            fmt::format("writing {} {} '{}'", table, per_step == 1 ? "row" : "rows from", rows[first]->key)));
      }
    }
    return OkStatus();
  }

  SqliteStore& store_;
};

Error SqliteStore::SqliteErrorOn(sqlite3* db, std::string_view what) const {
  return Error{ErrorCode::kIoError, fmt::format("SQLite store {}: {}: {}", path_, what, sqlite3_errmsg(db))};
}

Result<std::vector<ChangeRecord>> SqliteStore::ReadModuleChanges(std::string_view module, int64_t after_seq,
                                                                 int limit) {
  std::lock_guard lock(mu_);
  return ReadChangesLocked(module, after_seq, limit);
}

Result<ChangeLogHead> SqliteStore::ModuleHeadOn(sqlite3* db, std::string_view module) const {
  Statement stmt(db, "SELECT seq, at_ms FROM change_log WHERE module = ? ORDER BY seq DESC LIMIT 1");
  if (!stmt.ok()) return std::unexpected(SqliteErrorOn(db, "reading the change-log head"));
  BindAll(stmt.get(), module);
  int rc = sqlite3_step(stmt.get());
  if (rc == SQLITE_DONE) return ChangeLogHead{};
  if (rc != SQLITE_ROW) return std::unexpected(SqliteErrorOn(db, "reading the change-log head"));
  return ChangeLogHead{sqlite3_column_int64(stmt.get(), 0), sqlite3_column_int64(stmt.get(), 1)};
}

Result<ChangeLogHead> SqliteStore::ModuleHead(std::string_view module) {
  std::lock_guard lock(mu_);
  return ModuleHeadOn(db_, module);
}

InReplicationTx SqliteStore::ReplicationWriter() {
  return [this](const std::function<Status(ReplicationTx&)>& body) {
    return InWriteTransaction([&]() -> Status {
      SqliteReplicationTx tx(*this);
      return body(tx);
    });
  };
}

Result<ImportProgress> SqliteStore::ApplyChanges(std::string_view source_pool, std::string_view module,
                                                 const std::vector<ChangeRecord>& batch) {
  return ApplyChangesWith(ReplicationWriter(), source_pool, module, batch);
}

Result<int64_t> SqliteStore::ScanOnOwnConnection(std::string_view module,
                                                 const std::function<Status(const OpenCursor&)>& scan) {
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path_.c_str(), &raw, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
  std::unique_ptr<sqlite3, int (*)(sqlite3*)> db(raw, sqlite3_close);
  if (rc != SQLITE_OK) return std::unexpected(SqliteErrorOn(db.get(), "opening a connection to scan rows"));
  sqlite3_busy_timeout(db.get(), 10000);
  // WAL: the read transaction's first statement fixes its snapshot; writers go on.
  if (sqlite3_exec(db.get(), "BEGIN", nullptr, nullptr, nullptr) != SQLITE_OK) {
    return std::unexpected(SqliteErrorOn(db.get(), "starting a scan"));
  }
  auto head = ModuleHeadOn(db.get(), module);
  if (!head) return std::unexpected(head.error());
  auto open = [&](const ReplicatedTable& table, const SqlQuery& query) -> Result<std::unique_ptr<RowCursor>> {
    auto error = [this, d = db.get(), name = table.name] { return SqliteErrorOn(d, fmt::format("scanning {}", name)); };
    auto cursor = std::make_unique<SqliteCursor>(db.get(), query, table.types, error);
    if (!cursor->ok()) return std::unexpected(error());
    return cursor;
  };
  auto scanned = scan(open);
  sqlite3_exec(db.get(), "COMMIT", nullptr, nullptr, nullptr);  // read-only: nothing to lose
  if (!scanned) return std::unexpected(scanned.error());
  return head->seq;
}

Result<int64_t> SqliteStore::ScanRows(std::string_view module, std::string_view home_pool, std::string_view key_from,
                                      std::string_view key_to, int chunk_rows,
                                      const std::function<Status(std::vector<ReplicatedRow>&&)>& sink) {
  return ScanOnOwnConnection(module, [&](const OpenCursor& open) {
    return ScanTables(module, home_pool, key_from, key_to, chunk_rows, SqlitePlaceholder, open, sink);
  });
}

Result<int64_t> SqliteStore::ScanSnapshot(std::string_view module, std::string_view home_pool, int chunk_rows,
                                          size_t chunk_bytes, const std::function<Status(SnapshotChunk&&)>& sink) {
  return ScanOnOwnConnection(module, [&](const OpenCursor& open) {
    return ScanSnapshotTables(module, home_pool, chunk_rows, chunk_bytes, SqlitePlaceholder, open, sink);
  });
}

Result<ImportProgress> SqliteStore::ApplySnapshotChunk(std::string_view source_pool, std::string_view module,
                                                       std::string_view home_pool, int64_t snapshot_seq, bool first,
                                                       bool last, std::string_view chunk_json) {
  return ApplySnapshotChunkWith(ReplicationWriter(), source_pool, module, home_pool, snapshot_seq, first, last,
                                chunk_json);
}

Result<std::vector<ImportProgress>> SqliteStore::ListImportProgress() {
  std::lock_guard lock(mu_);
  Statement stmt(db_, fmt::format("SELECT {} FROM import_progress ORDER BY source_pool, module", kImportColumns).c_str());
  if (!stmt.ok()) return std::unexpected(SqliteError("listing import progress"));
  std::vector<ImportProgress> list;
  int rc;
  while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) list.push_back(ReadImportRow(stmt.get()));
  if (rc != SQLITE_DONE) return std::unexpected(SqliteError("listing import progress"));
  return list;
}

Status SqliteStore::RecordExportAck(std::string_view partner_pool, std::string_view module, int64_t acked_seq,
                                    int64_t now_ms) {
  if (auto tables = ReplicatedTables(module); !tables) return std::unexpected(tables.error());
  return InWriteTransaction([&]() -> Status {
    if (ExecuteOnce(db_,
                    "INSERT INTO export_progress(partner_pool, module, acked_seq, acked_at_ms) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(partner_pool, module) DO UPDATE SET acked_seq = excluded.acked_seq, "
                    "acked_at_ms = excluded.acked_at_ms WHERE excluded.acked_seq >= export_progress.acked_seq",
                    partner_pool, module, acked_seq, now_ms) != SQLITE_DONE) {
      return std::unexpected(SqliteError("recording an export ack"));
    }
    if (ExecuteOnce(db_,
                    "DELETE FROM change_log WHERE module = ?1 AND seq <= "
                    "(SELECT acked_seq FROM export_progress WHERE partner_pool = ?2 AND module = ?1) "
                    "AND seq < (SELECT MAX(seq) FROM change_log WHERE module = ?1)",
                    module, partner_pool) != SQLITE_DONE) {
      return std::unexpected(SqliteError("pruning the change log"));
    }
    return OkStatus();
  });
}

Result<std::vector<ExportProgress>> SqliteStore::ListExportProgress() {
  std::lock_guard lock(mu_);
  Statement stmt(db_, "SELECT partner_pool, module, acked_seq, acked_at_ms FROM export_progress "
                      "ORDER BY partner_pool, module");
  if (!stmt.ok()) return std::unexpected(SqliteError("listing export progress"));
  std::vector<ExportProgress> list;
  int rc;
  while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) {
    list.push_back(ExportProgress{ColumnText(stmt.get(), 0), ColumnText(stmt.get(), 1),
                                  sqlite3_column_int64(stmt.get(), 2), sqlite3_column_int64(stmt.get(), 3)});
  }
  if (rc != SQLITE_DONE) return std::unexpected(SqliteError("listing export progress"));
  return list;
}

Result<NamedLease> SqliteStore::TryAcquireNamedLease(std::string_view name, std::string_view holder, int64_t now_ms,
                                                     int64_t expires_at_ms) {
  NamedLease lease;
  // BEGIN IMMEDIATE: the check and the take are one step for every process.
  auto taken = InWriteTransaction([&]() -> Status {
    if (ExecuteOnce(db_,
                    "INSERT INTO named_leases(name, holder, expires_at_ms) VALUES (?1, ?2, ?4) "
                    "ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, expires_at_ms = excluded.expires_at_ms "
                    "WHERE named_leases.expires_at_ms <= ?3 OR named_leases.holder = excluded.holder",
                    name, holder, now_ms, expires_at_ms) != SQLITE_DONE) {
      return std::unexpected(SqliteError("taking a named lease"));
    }
    Statement stmt(db_, "SELECT name, holder, expires_at_ms FROM named_leases WHERE name = ?");
    if (!stmt.ok()) return std::unexpected(SqliteError("reading a named lease"));
    BindAll(stmt.get(), name);
    if (sqlite3_step(stmt.get()) != SQLITE_ROW) return std::unexpected(SqliteError("reading a named lease"));
    lease = NamedLease{ColumnText(stmt.get(), 0), ColumnText(stmt.get(), 1), sqlite3_column_int64(stmt.get(), 2)};
    return OkStatus();
  });
  if (!taken) return std::unexpected(taken.error());
  return lease;
}

Status SqliteStore::ReleaseNamedLease(std::string_view name, std::string_view holder) {
  std::lock_guard lock(mu_);
  if (ExecuteOnce(db_, "DELETE FROM named_leases WHERE name = ? AND holder = ?", name, holder) != SQLITE_DONE) {
    return std::unexpected(SqliteError("releasing a named lease"));
  }
  return OkStatus();
}

Status SqliteStore::RemoveCmsVersions(const std::vector<CmsVersionRecord>& versions) {
  std::lock_guard lock(mu_);
  if (auto s = Exec("BEGIN IMMEDIATE"); !s) return s;
  for (const CmsVersionRecord& record : versions) {
    if (ExecuteOnce(db_, "DELETE FROM cms_versions WHERE version = ? AND published_at_ms = ? AND document = ?",
                    record.version, record.published_at_ms, record.document) != SQLITE_DONE ||
        ExecuteOnce(db_, "DELETE FROM change_log WHERE module = 'cms' AND key = ? AND payload = ?",
                    CmsVersionChangeKey(record.version), CmsVersionPayloadJson(record)) != SQLITE_DONE) {
      Error error = SqliteError("removing CMS versions");
      Exec("ROLLBACK");
      return std::unexpected(std::move(error));
    }
  }
  return Exec("COMMIT");
}

Status SqliteStore::SetSetting(std::string_view key, std::string_view value) {
  std::lock_guard lock(mu_);
  if (ExecuteOnce(db_, "INSERT OR REPLACE INTO settings(key, value) VALUES (?, ?)", key, value) != SQLITE_DONE) {
    return std::unexpected(SqliteError("writing a setting"));
  }
  return OkStatus();
}

Result<std::optional<std::string>> SqliteStore::GetSetting(std::string_view key) {
  std::lock_guard lock(mu_);
  Statement stmt(db_, "SELECT value FROM settings WHERE key = ?");
  if (!stmt.ok()) return std::unexpected(SqliteError("reading a setting"));
  BindAll(stmt.get(), key);
  int rc = sqlite3_step(stmt.get());
  if (rc == SQLITE_DONE) return std::optional<std::string>();
  if (rc != SQLITE_ROW) return std::unexpected(SqliteError("reading a setting"));
  return std::optional<std::string>(ColumnText(stmt.get(), 0));
}

// ---- Soft state ---------------------------------------------------------------------

Status SqliteStore::WriteSoftState(const std::vector<SoftStateWrite>& batch) {
  if (batch.empty()) return OkStatus();
  return InWriteTransaction([&]() -> Status {
    Statement upsert(db_,
                     "INSERT INTO soft_state(pool, kind, key, routing_group, expires_at_ms, payload) "
                     "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(pool, kind, key) DO UPDATE SET "
                     "routing_group = excluded.routing_group, expires_at_ms = excluded.expires_at_ms, "
                     "payload = excluded.payload");
    Statement remove(db_, "DELETE FROM soft_state WHERE pool = ? AND kind = ? AND key = ?");
    if (!upsert.ok() || !remove.ok()) return std::unexpected(SqliteError("writing soft state"));
    for (const SoftStateWrite& write : batch) {
      const SoftStateRow& row = write.row;
      sqlite3_stmt* stmt = write.remove ? remove.get() : upsert.get();
      sqlite3_reset(stmt);
      if (write.remove) {
        BindAll(stmt, row.pool, row.kind, row.key);
      } else {
        BindAll(stmt, row.pool, row.kind, row.key, int64_t{row.routing_group}, row.expires_at_ms, row.payload);
      }
      if (sqlite3_step(stmt) != SQLITE_DONE) return std::unexpected(SqliteError("writing soft state"));
    }
    return OkStatus();
  });
}

Result<std::vector<SoftStateRow>> SqliteStore::LoadSoftState(std::string_view pool, const std::vector<int>& groups,
                                                             int64_t now_ms) {
  std::lock_guard lock(mu_);
  std::vector<SoftStateRow> rows;
  if (groups.empty()) return rows;
  // Group numbers are ints from RoutingGroupOf, so they go into the SQL text directly.
  Statement stmt(db_, fmt::format("SELECT pool, kind, key, routing_group, expires_at_ms, payload FROM soft_state "
                                  "WHERE pool = ? AND expires_at_ms > ? AND routing_group IN ({})",
                                  fmt::join(groups, ","))
                          .c_str());
  if (!stmt.ok()) return std::unexpected(SqliteError("loading soft state"));
  BindAll(stmt.get(), pool, now_ms);
  int rc;
  while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) {
    rows.push_back(SoftStateRow{ColumnText(stmt.get(), 0), ColumnText(stmt.get(), 1), ColumnText(stmt.get(), 2),
                                sqlite3_column_int(stmt.get(), 3), sqlite3_column_int64(stmt.get(), 4),
                                ColumnText(stmt.get(), 5)});
  }
  if (rc != SQLITE_DONE) return std::unexpected(SqliteError("loading soft state"));
  return rows;
}

Result<int64_t> SqliteStore::DeleteExpiredSoftState(std::string_view pool, int64_t now_ms) {
  std::lock_guard lock(mu_);
  if (ExecuteOnce(db_, "DELETE FROM soft_state WHERE pool = ? AND expires_at_ms <= ?", pool, now_ms) != SQLITE_DONE) {
    return std::unexpected(SqliteError("deleting expired soft state"));
  }
  return static_cast<int64_t>(sqlite3_changes(db_));
}

}  // namespace tandem
