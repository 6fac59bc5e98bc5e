#include "store/postgres_store.h"

#include <endian.h>
#include <libpq-fe.h>

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "store/migrations.h"
#include "store/replication.h"
#include "store/store_checks.h"

// Design notes.
//
// Writer lock and change-log order. The change log's seq is a BIGSERIAL; a sequence
// hands out numbers in call order, not commit order, so two concurrent writers could
// commit seq 8 before seq 7, and a Backup Service that had read up to 8 would never
// ship 7. Every write transaction therefore starts with
//   SELECT pg_advisory_xact_lock(kLockClass, kWriterLock)
// and holds it until its COMMIT is done (PostgreSQL releases transaction locks after
// the commit is durable, replicated to the synchronous standby and visible). A seq is
// only drawn under the lock, so seq order is commit order. The same lock serializes
// writers as SQLite's BEGIN IMMEDIATE does, which keeps the read-check-write
// transactions below (CMS append, privacy merge, meeting update) free of lost updates
// without SERIALIZABLE retries. The price: write transactions of one database commit
// one at a time, so their rate is bounded by commit latency (~1,000/s with a
// synchronous standby, DESIGN.md §5); callers batch (AddUsers takes a batch). The
// alternative (LOCK TABLE change_log IN SHARE ROW EXCLUSIVE MODE) orders the same way
// but also conflicts with autovacuum; an advisory lock touches no table.
//
// Retries. An operation is one transaction run by Transact(). If the connection is
// lost (or lands on a read-only server) before COMMIT was sent, the server rolled the
// transaction back, so it is run again on a new connection after a backoff, until the
// retry budget is spent. If it is lost during COMMIT, the transaction may have
// committed: the operation fails with kUnavailable saying so (except idempotent ones:
// reads and migrations, which are simply run again).

namespace tandem {
namespace {

using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

constexpr Oid kBoolOid = 16;
constexpr Oid kByteaOid = 17;
constexpr Oid kInt8Oid = 20;
constexpr Oid kInt2Oid = 21;
constexpr Oid kInt4Oid = 23;
constexpr Oid kTextOid = 25;

// Advisory lock keys (two-int form): a class for tandem ("tand") and one key per use.
constexpr int kLockClass = 0x74616e64;
constexpr int kWriterLock = 1;
constexpr int kMigrationLock = 2;

// Rows of the change log go in per INSERT (7 parameters each, well under 65,535).
constexpr size_t kChangeRowsPerInsert = 500;

// Bytes bound without copying (content uploads); must outlive the statement.
struct Bytes {
  std::string_view bytes;
};

// Statement parameters, all sent in binary format with explicit types: text keeps
// its exact bytes (no truncation at a NUL: the server refuses it instead), integers
// need no formatting, and BYTEA needs no escaping.
class Params {
 public:
  Params() = default;
  template <typename... Args>
  explicit Params(const Args&... args) {
    (Add(args), ...);
  }

  void Add(std::string_view text) { Push(kTextOid, Own(std::string(text)), text.size()); }
  void Add(int64_t value) {
    uint64_t big_endian = htobe64(static_cast<uint64_t>(value));
    std::string encoded(reinterpret_cast<const char*>(&big_endian), sizeof big_endian);
    Push(kInt8Oid, Own(std::move(encoded)), sizeof big_endian);
  }
  void Add(const Bytes& blob) {
    // A null pointer would be SQL NULL; an empty file is an empty BYTEA.
    Push(kByteaOid, blob.bytes.empty() ? "" : blob.bytes.data(), blob.bytes.size());
  }

  int size() const { return static_cast<int>(types_.size()); }
  const Oid* types() const { return types_.data(); }
  const char* const* values() const { return values_.data(); }
  const int* lengths() const { return lengths_.data(); }
  const int* formats() const { return formats_.data(); }

 private:
  const char* Own(std::string value) {
    owned_.push_back(std::move(value));  // a deque never moves its elements
    return owned_.back().data();
  }
  void Push(Oid type, const char* value, size_t length) {
    TANDEM_CHECK(length <= static_cast<size_t>(INT32_MAX));
    types_.push_back(type);
    values_.push_back(value);
    lengths_.push_back(static_cast<int>(length));
    formats_.push_back(1);
  }

  std::deque<std::string> owned_;
  std::vector<Oid> types_;
  std::vector<const char*> values_;
  std::vector<int> lengths_;
  std::vector<int> formats_;
};

struct ResultDeleter {
  void operator()(PGresult* result) const { PQclear(result); }
};
using PgResult = std::unique_ptr<PGresult, ResultDeleter>;

// Readers of binary-format result columns. The column types are fixed by the schema,
// so a type this code does not expect is a broken invariant.
std::string Text(const PGresult* result, int row, int column) {
  return std::string(PQgetvalue(result, row, column), static_cast<size_t>(PQgetlength(result, row, column)));
}

int64_t Int(const PGresult* result, int row, int column) {
  if (PQgetisnull(result, row, column)) return 0;
  const char* value = PQgetvalue(result, row, column);
  int length = PQgetlength(result, row, column);
  switch (PQftype(result, column)) {
    case kInt8Oid: {
      TANDEM_CHECK(length == 8);
      uint64_t big_endian;
      std::memcpy(&big_endian, value, 8);
      return static_cast<int64_t>(be64toh(big_endian));
    }
    case kInt4Oid: {
      TANDEM_CHECK(length == 4);
      uint32_t big_endian;
      std::memcpy(&big_endian, value, 4);
      return static_cast<int32_t>(be32toh(big_endian));
    }
    case kInt2Oid: {
      TANDEM_CHECK(length == 2);
      uint16_t big_endian;
      std::memcpy(&big_endian, value, 2);
      return static_cast<int16_t>(be16toh(big_endian));
    }
    case kBoolOid:
      TANDEM_CHECK(length == 1);
      return value[0] != 0;
    default:
      TANDEM_CHECK(false && "an integer column of an unexpected type");
  }
  return 0;
}

// libpq's message on one line: "ERROR:  " prefixes dropped, newlines and tabs
// folded into single spaces.
std::string TrimmedMessage(const char* message) {
  std::string text;
  for (const char* c = message ? message : ""; *c; ++c) {
    bool space = *c == '\n' || *c == '\t' || *c == ' ';
    if (space && (text.empty() || text.back() == ' ')) continue;
    text += space ? ' ' : *c;
  }
  while (!text.empty() && text.back() == ' ') text.pop_back();
  for (std::string_view prefix : {"ERROR: ", "FATAL: "}) {
    if (text.starts_with(prefix)) text.erase(0, prefix.size());
  }
  return text.empty() ? "unknown error" : text;
}

// What went wrong with a statement: the server's primary message and detail when
// it answered, else libpq's description of the connection failure.
std::string FailureMessage(const PGresult* result, const PGconn* conn) {
  const char* primary = result ? PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
  if (!primary) return TrimmedMessage(result ? PQresultErrorMessage(result) : PQerrorMessage(conn));
  std::string message = TrimmedMessage(primary);
  if (const char* detail = PQresultErrorField(result, PG_DIAG_MESSAGE_DETAIL)) {
    message += " (" + TrimmedMessage(detail) + ")";
  }
  return message;
}

// Drops notices ("relation already exists, skipping", replication warnings): libpq
// would print them on stderr. Errors arrive with their results.
void IgnoreNotice(void*, const PGresult*) {}

constexpr const char* kUserColumns =
    "uri, username, domain, home_pool, ha1_md5, ha1_sha256, ha1_md5_full, ha1_sha256_full, created_at_ms";

UserRecord ReadUserRow(const PGresult* r, int row) {
  return UserRecord{Text(r, row, 0), Text(r, row, 1), Text(r, row, 2), Text(r, row, 3), Text(r, row, 4),
                    Text(r, row, 5), Text(r, row, 6), Text(r, row, 7), Int(r, row, 8)};
}

constexpr const char* kMeetingColumns =
    "id, organizer, home_pool, subject, start_ms, end_ms, attendees, pin, lobby, state, created_ms, updated_ms";

Result<MeetingRecord> ReadMeetingRow(const PGresult* r, int row) {
  MeetingRecord meeting;
  meeting.id = Text(r, row, 0);
  meeting.organizer = Text(r, row, 1);
  meeting.home_pool = Text(r, row, 2);
  meeting.subject = Text(r, row, 3);
  meeting.start_ms = Int(r, row, 4);
  meeting.end_ms = Int(r, row, 5);
  auto attendees = ParseStringList(Text(r, row, 6), "attendee list of meeting " + meeting.id);
  if (!attendees) return std::unexpected(attendees.error());
  meeting.attendees = std::move(*attendees);
  meeting.pin = Text(r, row, 7);
  auto lobby = ParseLobbyPolicy(Text(r, row, 8));
  auto state = ParseMeetingState(Text(r, row, 9));
  if (!lobby || !state) {
    return MakeError(ErrorCode::kCorruption, fmt::format("meeting {} has an unknown lobby policy or state", meeting.id));
  }
  meeting.lobby = *lobby;
  meeting.state = *state;
  meeting.created_ms = Int(r, row, 10);
  meeting.updated_ms = Int(r, row, 11);
  return meeting;
}

constexpr const char* kContentInfoColumns = "meeting_id, name, size, sha256, home_pool, uploaded_ms";

ContentInfo ReadContentInfoRow(const PGresult* r, int row) {
  return ContentInfo{Text(r, row, 0), Text(r, row, 1), Int(r, row, 2),
                     Text(r, row, 3), Text(r, row, 4), Int(r, row, 5)};
}

// ---- Connections ----------------------------------------------------------------

// "host=… port=… dbname=…" of a DSN, for messages (never its password).
std::string DescribeDsn(const std::string& dsn) {
  // libpq takes a string that is neither key=value pairs nor a URI as a database name.
  if (dsn.find('=') == std::string::npos && dsn.find("://") == std::string::npos) {
    return dsn.empty() ? "(libpq defaults)" : "dbname=" + dsn;
  }
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(dsn.c_str(), &error);
  if (!options) {
    PQfreemem(error);
    return "(unparsable DSN)";
  }
  std::string out;
  for (const PQconninfoOption* option = options; option->keyword; ++option) {
    std::string_view keyword = option->keyword;
    if (option->val && (keyword == "host" || keyword == "hostaddr" || keyword == "port" || keyword == "dbname")) {
      if (!out.empty()) out += ' ';
      out += fmt::format("{}={}", keyword, option->val);
    }
  }
  PQconninfoFree(options);
  return out.empty() ? "(libpq defaults)" : out;
}

// A borrowed connection; returned to the pool (or closed) by Release.
class ConnectionPool {
 public:
  ConnectionPool(std::string dsn, int max_connections) : dsn_(std::move(dsn)), max_(std::max(1, max_connections)) {}
  ~ConnectionPool() {
    std::lock_guard lock(mu_);
    TANDEM_CHECK(open_ == static_cast<int>(idle_.size()));  // nothing borrowed outlives the store
    for (PGconn* conn : idle_) PQfinish(conn);
  }

  // An idle connection, or a new one when fewer than max are open. kUnavailable when
  // the server cannot be reached (one try over every host of the DSN); kTimeout when
  // all connections stayed busy until `wait_deadline`.
  Result<PGconn*> Acquire(SteadyClock::time_point wait_deadline) {
    std::unique_lock lock(mu_);
    for (;;) {
      if (!idle_.empty()) {
        PGconn* conn = idle_.back();
        idle_.pop_back();
        return conn;
      }
      if (open_ < max_) break;
      if (cv_.wait_until(lock, wait_deadline) == std::cv_status::timeout && idle_.empty() && open_ >= max_) {
        return MakeError(ErrorCode::kTimeout,
                         fmt::format("all {} connections to the PostgreSQL store are busy", max_));
      }
    }
    ++open_;
    lock.unlock();
    auto conn = Connect();
    if (!conn) {
      lock.lock();
      --open_;
      cv_.notify_one();
    }
    return conn;
  }

  // Gives a connection back: kept if it is healthy and idle, closed otherwise. A lost
  // connection usually means the server went away, so the idle ones are closed too.
  void Release(PGconn* conn, bool lost) {
    std::vector<PGconn*> to_close;
    {
      std::lock_guard lock(mu_);
      bool healthy = !lost && PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) == PQTRANS_IDLE;
      if (healthy) {
        idle_.push_back(conn);
      } else {
        to_close.push_back(conn);
        --open_;
        if (lost) {
          to_close.insert(to_close.end(), idle_.begin(), idle_.end());
          open_ -= static_cast<int>(idle_.size());
          idle_.clear();
        }
      }
      cv_.notify_all();
    }
    for (PGconn* c : to_close) PQfinish(c);
  }

 private:
  Result<PGconn*> Connect() {
    // Defaults first: the DSN (expanded in place of "dbname") overrides them.
    const char* keywords[] = {"connect_timeout", "target_session_attrs", "client_encoding",
                              "fallback_application_name", "keepalives_idle", "keepalives_interval",
                              "keepalives_count", "dbname", nullptr};
    const char* values[] = {"3", "read-write", "UTF8", "tandem", "10", "3", "3", dsn_.c_str(), nullptr};
    PGconn* conn = PQconnectdbParams(keywords, values, /*expand_dbname=*/1);
    if (!conn) return MakeError(ErrorCode::kUnavailable, "cannot allocate a PostgreSQL connection");
    if (PQstatus(conn) != CONNECTION_OK) {
      std::string reason = TrimmedMessage(PQerrorMessage(conn));
      PQfinish(conn);
      return MakeError(ErrorCode::kUnavailable,
                       fmt::format("cannot connect to the PostgreSQL store ({}): {}", description_, reason));
    }
    PQsetNoticeReceiver(conn, IgnoreNotice, nullptr);
    // A client that vanished mid-transaction must not hold the writer lock for long.
    PgResult set(PQexec(conn, "SET idle_in_transaction_session_timeout = '60s'"));
    if (!set || PQresultStatus(set.get()) != PGRES_COMMAND_OK) {
      std::string reason = TrimmedMessage(PQerrorMessage(conn));
      PQfinish(conn);
      return MakeError(ErrorCode::kUnavailable,
                       fmt::format("cannot set up a connection to the PostgreSQL store ({}): {}", description_, reason));
    }
    return conn;
  }

  const std::string dsn_;
  const std::string description_ = DescribeDsn(dsn_);
  const int max_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<PGconn*> idle_;  // guarded by mu_
  int open_ = 0;               // idle + borrowed; guarded by mu_
};

// One transaction on one connection, as seen by an operation's body: runs
// statements, remembers whether the last failure lost the connection (or may succeed
// on a retry), and collects the change-log records to append before COMMIT.
class Tx {
 public:
  explicit Tx(PGconn* conn) : conn_(conn) {}

  // Runs one statement; rows come back in binary format.
  Result<PgResult> Query(std::string_view what, const char* sql, const Params& params = Params()) {
    PgResult result(PQexecParams(conn_, sql, params.size(), params.types(), params.values(), params.lengths(),
                                 params.formats(), /*resultFormat=*/1));
    return Check(what, std::move(result));
  }
  Status Run(std::string_view what, const char* sql, const Params& params = Params()) {
    auto result = Query(what, sql, params);
    if (!result) return std::unexpected(result.error());
    return OkStatus();
  }
  // Several statements (migrations, BEGIN), simple-query protocol, no parameters.
  Status RunScript(std::string_view what, const char* sql) {
    auto result = Check(what, PgResult(PQexec(conn_, sql)));
    if (!result) return std::unexpected(result.error());
    return OkStatus();
  }

  // COPY ... FROM STDIN (`sql`) of `data`, the whole of what it reads.
  Status CopyIn(std::string_view what, const char* sql, std::string_view data) {
    auto started = Check(what, PgResult(PQexec(conn_, sql)), PGRES_COPY_IN);
    if (!started) return std::unexpected(started.error());
    // A failed send shows in the result that follows (or in the connection's status).
    if (data.size() <= static_cast<size_t>(INT32_MAX)) {
      (void)PQputCopyData(conn_, data.data(), static_cast<int>(data.size()));
      (void)PQputCopyEnd(conn_, nullptr);
    } else {
      (void)PQputCopyEnd(conn_, "more than 2 GiB to copy at once");
    }
    auto copied = Check(what, PgResult(PQgetResult(conn_)));
    while (PGresult* rest = PQgetResult(conn_)) PQclear(rest);  // the protocol ends with a null result
    if (!copied) return std::unexpected(copied.error());
    return OkStatus();
  }

  void LogChange(ChangeRecord change) { changes_.push_back(std::move(change)); }
  const std::vector<ChangeRecord>& changes() const { return changes_; }

  const std::string& sqlstate() const { return sqlstate_; }
  // The last failure as the server (or libpq) put it.
  const std::string& message() const { return message_; }
  // The connection is gone (or useless: a read-only server); close it.
  bool lost() const { return lost_; }
  // The failed transaction was rolled back by the server and may succeed if run again.
  bool retryable() const { return retryable_; }
  // Makes the current failure final: running the body again would repeat an effect
  // outside the database.
  void ForbidRetry() { retryable_ = false; }
  PGconn* conn() const { return conn_; }

  // Classifies a result; kept as the transaction's last failure. `expected` is a
  // success too (besides a command's and a query's).
  Result<PgResult> Check(std::string_view what, PgResult result, ExecStatusType expected = PGRES_COMMAND_OK) {
    ExecStatusType status = result ? PQresultStatus(result.get()) : PGRES_FATAL_ERROR;
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK || status == expected) return result;
    const char* state = result ? PQresultErrorField(result.get(), PG_DIAG_SQLSTATE) : nullptr;
    sqlstate_ = state ? state : "";
    message_ = FailureMessage(result.get(), conn_);
    // Class 08: connection exception; 57P01-03: the server is shutting down or
    // starting; 25006: a read-only server (a standby, or a primary being demoted).
    lost_ = PQstatus(conn_) != CONNECTION_OK || sqlstate_.starts_with("08") || sqlstate_ == "57P01" ||
            sqlstate_ == "57P02" || sqlstate_ == "57P03" || sqlstate_ == "25006";
    // 40001 serialization failure, 40P01 deadlock: the server rolled back.
    retryable_ = lost_ || sqlstate_ == "40001" || sqlstate_ == "40P01";
    ErrorCode code = ErrorCode::kIoError;
    if (lost_) {
      code = ErrorCode::kUnavailable;
    } else if (sqlstate_.starts_with("22") || sqlstate_ == "23514") {
      code = ErrorCode::kInvalidArgument;  // data exception (e.g. a NUL in text), check violation
    } else if (sqlstate_ == "23505") {
      code = ErrorCode::kAlreadyExists;
    } else if (sqlstate_ == "55P03" || sqlstate_ == "57014") {
      code = ErrorCode::kTimeout;  // lock timeout, statement timeout
    }
    return MakeError(code, fmt::format("PostgreSQL store: {}: {}", what, message_));
  }

 private:
  PGconn* conn_;
  std::vector<ChangeRecord> changes_;
  std::string sqlstate_;
  std::string message_;
  bool lost_ = false;
  bool retryable_ = false;
};

// Appends the collected records (inside the transaction, under the writer lock).
Status AppendChanges(Tx& tx) {
  const std::vector<ChangeRecord>& changes = tx.changes();
  for (size_t begin = 0; begin < changes.size(); begin += kChangeRowsPerInsert) {
    size_t end = std::min(changes.size(), begin + kChangeRowsPerInsert);
    std::string sql = "INSERT INTO change_log(at_ms, module, home_pool, key, op, payload) VALUES ";
    Params params;
    for (size_t i = begin; i < end; ++i) {
      int first = static_cast<int>((i - begin) * 6) + 1;
      sql += fmt::format("{}(${}, ${}, ${}, ${}, ${}, ${})", i == begin ? "" : ", ", first, first + 1, first + 2,
                         first + 3, first + 4, first + 5);
      const ChangeRecord& change = changes[i];
      params.Add(change.at_ms);
      params.Add(change.module);
      params.Add(change.home_pool);
      params.Add(change.key);
      params.Add(change.op);
      params.Add(change.payload);
    }
    if (auto s = tx.Run("appending to the change log", sql.c_str(), params); !s) return s;
  }
  return OkStatus();
}

enum class TxMode {
  kAutocommit,  // one read statement, no BEGIN
  kRead,        // BEGIN REPEATABLE READ READ ONLY: one snapshot for several reads
  kWrite,       // BEGIN + the writer lock; change-log records appended before COMMIT
  kMigrate,     // BEGIN + the migration lock
};

class PostgresStore final : public Store {
 public:
  PostgresStore(const std::string& dsn, PostgresStoreOptions options)
      : options_(std::move(options)), pool_(dsn, options_.max_connections) {}

  Status Migrate() override;
  Result<int> SchemaVersion() override;
  Result<std::optional<CmsVersionRecord>> LatestCmsVersion() override;
  Status AppendCmsVersion(const CmsVersionRecord& record, int64_t expected_previous) override;
  Status RemoveCmsVersions(const std::vector<CmsVersionRecord>& versions) override;
  Status AddUsers(const std::vector<UserRecord>& users) override;
  Status RemoveUser(const std::string& uri) override;
  Result<std::optional<UserRecord>> FindUser(const std::string& username, const std::string& domain) override;
  Result<std::vector<UserRecord>> ListUsers() override;
  Status UpsertContact(const ContactRecord& contact) override;
  Status RemoveContact(const std::string& owner, const std::string& contact) override;
  Result<std::vector<ContactRecord>> ListContacts(const std::string& owner) override;
  Status AddContactGroup(const std::string& owner, const std::string& name) override;
  Status RemoveContactGroup(const std::string& owner, const std::string& name) override;
  Result<std::vector<ContactGroupRecord>> ListContactGroups(const std::string& owner) override;
  Status SetPresenceNote(const std::string& owner, const std::string& note) override;
  Result<PresenceNoteRecord> GetPresenceNote(const std::string& owner) override;
  Result<PrivacySettings> UpdatePrivacy(const std::string& owner, const PrivacyUpdate& update) override;
  Result<PrivacySettings> GetPrivacy(const std::string& owner) override;
  Result<PresencePolicy> GetPresencePolicy(const std::string& owner) override;
  Result<MeetingRecord> CreateMeeting(const MeetingRecord& meeting) override;
  Result<MeetingRecord> UpdateMeeting(const std::string& id, const MeetingUpdate& update) override;
  Result<MeetingRecord> CancelMeeting(const std::string& id) override;
  Result<std::optional<MeetingRecord>> GetMeeting(const std::string& id) override;
  Result<std::vector<MeetingRecord>> ListMeetings(const MeetingFilter& filter) override;
  Result<ContentInfo> PutContent(const ContentInfo& info, std::string_view bytes) override;
  Result<std::optional<ContentRecord>> GetContent(const std::string& meeting_id, const std::string& name) override;
  Result<std::vector<ContentInfo>> ListContent(const std::string& meeting_id) override;
  Result<std::vector<ChangeRecord>> ReadChanges(int64_t after_seq, int limit) override;
  Status RenewLease(const LeaseRecord& lease) override;
  Status ReleaseLease(const std::string& server_id) override;
  Result<std::vector<LeaseRecord>> ListLeases(const std::string& pool) override;
  Result<std::vector<ChangeRecord>> ReadModuleChanges(std::string_view module, int64_t after_seq, int limit) override;
  Result<ChangeLogHead> ModuleHead(std::string_view module) override;
  Result<ImportProgress> ApplyChanges(std::string_view source_pool, std::string_view module,
                                      const std::vector<ChangeRecord>& batch) override;
  Result<int64_t> ScanRows(std::string_view module, std::string_view home_pool, std::string_view key_from,
                           std::string_view key_to, int chunk_rows,
                           const std::function<Status(std::vector<ReplicatedRow>&&)>& sink) override;
  Result<int64_t> ScanSnapshot(std::string_view module, std::string_view home_pool, int chunk_rows, size_t chunk_bytes,
                               const std::function<Status(SnapshotChunk&&)>& sink) override;
  Result<ImportProgress> ApplySnapshotChunk(std::string_view source_pool, std::string_view module,
                                            std::string_view home_pool, int64_t snapshot_seq, bool first, bool last,
                                            std::string_view chunk_json) override;
  Result<std::vector<ImportProgress>> ListImportProgress() override;
  Status RecordExportAck(std::string_view partner_pool, std::string_view module, int64_t acked_seq,
                         int64_t now_ms) override;
  Result<std::vector<ExportProgress>> ListExportProgress() override;
  Result<NamedLease> TryAcquireNamedLease(std::string_view name, std::string_view holder, int64_t now_ms,
                                          int64_t expires_at_ms) override;
  Status ReleaseNamedLease(std::string_view name, std::string_view holder) override;
  Status SetSetting(std::string_view key, std::string_view value) override;
  Result<std::optional<std::string>> GetSetting(std::string_view key) override;
  Status WriteSoftState(const std::vector<SoftStateWrite>& batch) override;
  Result<std::vector<SoftStateRow>> LoadSoftState(std::string_view pool, const std::vector<int>& groups,
                                                  int64_t now_ms) override;
  Result<int64_t> DeleteExpiredSoftState(std::string_view pool, int64_t now_ms) override;

 private:
  using Body = std::function<Status(Tx&)>;

  // What one run of a transaction came to.
  enum class Outcome { kDone, kRetry, kUnknown };
  struct Attempt {
    Outcome outcome;
    Status status;
  };

  // Runs `body` as one transaction of `mode`, reconnecting and running it again
  // while that is safe (see the notes at the top of this file). `idempotent` bodies
  // are also run again after a COMMIT whose outcome is unknown.
  Status Transact(std::string_view what, TxMode mode, const Body& body, bool idempotent = false);
  Attempt RunOnce(std::string_view what, TxMode mode, const Body& body, bool idempotent, Tx& tx);

  // Inside a transaction.
  Result<std::string> UserHomePool(Tx& tx, const std::string& uri);
  Result<std::vector<ContactRecord>> ListContactsIn(Tx& tx, const std::string& owner);
  Result<PrivacySettings> GetPrivacyIn(Tx& tx, const std::string& owner);
  Result<std::optional<MeetingRecord>> GetMeetingIn(Tx& tx, const std::string& id);
  Status WriteMeeting(Tx& tx, const MeetingRecord& meeting, bool insert);
  Result<ChangeLogHead> ModuleHeadIn(Tx& tx, std::string_view module);
  // Runs replication's writes as one kWrite transaction.
  InReplicationTx ReplicationWriter(std::string_view what);
  // Runs `scan` (ScanTables or ScanSnapshotTables over the cursors it is given) in
  // one read transaction; the module's head seq as of it. `scan` sets `*delivered`
  // once its sink got rows: the transaction is then not run again.
  Result<int64_t> ScanInOneRead(std::string_view module,
                                const std::function<Status(const OpenCursor&, bool* delivered)>& scan);
  // Change-log records after `after_seq`, of one module or (nullopt) all.
  Result<std::vector<ChangeRecord>> ReadChangesOf(std::optional<std::string_view> module, int64_t after_seq,
                                                  int limit);

  const PostgresStoreOptions options_;
  ConnectionPool pool_;
};

Status PostgresStore::Transact(std::string_view what, TxMode mode, const Body& body, bool idempotent) {
  const auto start = SteadyClock::now();
  const auto deadline = start + options_.retry_budget;
  auto backoff = options_.first_backoff;
  std::minstd_rand jitter(static_cast<unsigned>(start.time_since_epoch().count()));
  Error last;
  for (int attempt = 1;; ++attempt) {
    auto conn = pool_.Acquire(SteadyClock::now() + options_.pool_wait);
    bool lost = true;
    if (conn) {
      Tx tx(*conn);
      Attempt result = RunOnce(what, mode, body, idempotent, tx);
      lost = tx.lost();
      pool_.Release(*conn, lost);
      if (result.outcome == Outcome::kDone) return result.status;
      if (result.outcome == Outcome::kUnknown) return result.status;
      last = result.status.error();
    } else {
      if (conn.error().code == ErrorCode::kTimeout) return std::unexpected(conn.error());
      last = conn.error();
    }
    // Connection trouble waits for the server to come back (exponential backoff); a
    // serialization failure or deadlock is retried after a short random pause.
    auto pause = lost ? backoff : std::chrono::milliseconds(jitter() % 10);
    if (SteadyClock::now() + pause >= deadline) {
      auto spent = std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - start);
      return MakeError(ErrorCode::kUnavailable,
                       fmt::format("{} (gave up after {} attempts in {:.1f} s; the PostgreSQL store {})",
                                   last.message, attempt, static_cast<double>(spent.count()) / 1000,
                                   lost ? "is unreachable or read-only" : "stayed busy"));
    }
    std::this_thread::sleep_for(pause);
    if (lost) backoff = std::min(backoff * 2, options_.max_backoff);
  }
}

PostgresStore::Attempt PostgresStore::RunOnce(std::string_view what, TxMode mode, const Body& body, bool idempotent,
                                              Tx& tx) {
  auto failed = [&](Status status) -> Attempt {
    if (tx.retryable()) return {Outcome::kRetry, std::move(status)};
    return {Outcome::kDone, std::move(status)};
  };
  auto rollback_and = [&](Status status) -> Attempt {
    bool retry = tx.retryable();
    if (!tx.lost()) {
      // Keep the classification of the failure, not of the ROLLBACK.
      PgResult rollback(PQexec(tx.conn(), "ROLLBACK"));
    }
    return {retry ? Outcome::kRetry : Outcome::kDone, std::move(status)};
  };

  switch (mode) {
    case TxMode::kAutocommit: {
      Status status = body(tx);
      return status ? Attempt{Outcome::kDone, OkStatus()} : failed(std::move(status));
    }
    case TxMode::kRead:
      if (auto s = tx.RunScript(what, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); !s) return rollback_and(s);
      break;
    case TxMode::kWrite:
      if (auto s = tx.RunScript(what, fmt::format("BEGIN; SELECT pg_advisory_xact_lock({}, {})", kLockClass,
                                                  kWriterLock)
                                          .c_str());
          !s) {
        return rollback_and(s);
      }
      break;
    case TxMode::kMigrate:
      if (auto s = tx.RunScript(what, fmt::format("BEGIN; SELECT pg_advisory_xact_lock({}, {})", kLockClass,
                                                  kMigrationLock)
                                          .c_str());
          !s) {
        return rollback_and(s);
      }
      break;
  }

  if (Status status = body(tx); !status) return rollback_and(std::move(status));
  if (auto s = AppendChanges(tx); !s) return rollback_and(std::move(s));
  if (mode == TxMode::kWrite && options_.before_commit_for_testing) {
    options_.before_commit_for_testing(PQbackendPID(tx.conn()));
  }

  auto committed = tx.Check(what, PgResult(PQexec(tx.conn(), "COMMIT")));
  if (!committed) {
    if (!tx.lost()) return failed(std::unexpected(committed.error()));  // refused and rolled back
    if (mode == TxMode::kRead || idempotent) return {Outcome::kRetry, std::unexpected(committed.error())};
    return {Outcome::kUnknown,
            MakeError(ErrorCode::kUnavailable,
                      fmt::format("PostgreSQL store: {}: the connection was lost during COMMIT, so whether the change "
                                  "was committed is unknown; check before retrying ({})",
                                  what, tx.message()))};
  }
  // A transaction that had failed would answer ROLLBACK to COMMIT; every failure
  // above returns first, so this is a broken invariant.
  TANDEM_CHECK(std::string_view(PQcmdStatus(committed->get())) == "COMMIT");
  return {Outcome::kDone, OkStatus()};
}

// ---- Schema and CMS --------------------------------------------------------------

Status PostgresStore::Migrate() {
  // Under the migration lock, so several processes migrating at once serialize and
  // each migration runs once. Re-running one is harmless (it re-checks the version),
  // so these are retried even after a COMMIT whose outcome is unknown.
  if (auto s = Transact(
          "creating the schema-version table", TxMode::kMigrate,
          [&](Tx& tx) {
            return tx.Run("creating the schema-version table",
                          "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                          "applied_at_ms BIGINT NOT NULL)");
          },
          /*idempotent=*/true);
      !s) {
    return s;
  }
  for (const Migration& migration : PostgresMigrations()) {
    std::string what = fmt::format("migration {} ({})", migration.version, migration.name);
    auto applied = Transact(
        what, TxMode::kMigrate,
        [&](Tx& tx) -> Status {
          auto current = tx.Query(what, "SELECT COALESCE(MAX(version), 0) FROM schema_version");
          if (!current) return std::unexpected(current.error());
          if (Int(current->get(), 0, 0) >= migration.version) return OkStatus();
          if (auto s = tx.RunScript(what, migration.sql); !s) return s;
          return tx.Run(what, "INSERT INTO schema_version(version, applied_at_ms) VALUES ($1, $2)",
                        Params(int64_t{migration.version}, NowUnixMillis()));
        },
        /*idempotent=*/true);
    if (!applied) return applied;
  }
  return OkStatus();
}

Result<int> PostgresStore::SchemaVersion() {
  int version = 0;
  auto read = Transact("reading the schema version", TxMode::kAutocommit, [&](Tx& tx) -> Status {
    auto result = tx.Query("reading the schema version", "SELECT COALESCE(MAX(version), 0) FROM schema_version");
    if (!result) return std::unexpected(result.error());
    version = static_cast<int>(Int(result->get(), 0, 0));
    return OkStatus();
  });
  if (!read) return std::unexpected(read.error());
  return version;
}

Result<std::optional<CmsVersionRecord>> PostgresStore::LatestCmsVersion() {
  std::optional<CmsVersionRecord> latest;
  auto read = Transact("reading the CMS version", TxMode::kAutocommit, [&](Tx& tx) -> Status {
    auto result = tx.Query("reading the CMS version",
                           "SELECT version, published_at_ms, document FROM cms_versions ORDER BY version DESC LIMIT 1");
    if (!result) return std::unexpected(result.error());
    latest.reset();
    if (PQntuples(result->get()) == 1) {
      latest = CmsVersionRecord{Int(result->get(), 0, 0), Int(result->get(), 0, 1), Text(result->get(), 0, 2)};
    }
    return OkStatus();
  });
  if (!read) return std::unexpected(read.error());
  return latest;
}

Status PostgresStore::AppendCmsVersion(const CmsVersionRecord& record, int64_t expected_previous) {
  if (record.version != expected_previous + 1) {
    return MakeError(ErrorCode::kInternal, "CMS version must follow the previous one");
  }
  return Transact("writing a CMS version", TxMode::kWrite, [&](Tx& tx) -> Status {
    auto newest = tx.Query("reading the CMS version", "SELECT COALESCE(MAX(version), 0) FROM cms_versions");
    if (!newest) return std::unexpected(newest.error());
    if (int64_t version = Int(newest->get(), 0, 0); version != expected_previous) {
      return MakeError(ErrorCode::kAlreadyExists,
                       fmt::format("CMS version {} was published concurrently; retry", version));
    }
    tx.LogChange({0, record.published_at_ms, "cms", "", CmsVersionChangeKey(record.version), "upsert",
                  CmsVersionPayloadJson(record)});
    return tx.Run("writing a CMS version",
                  "INSERT INTO cms_versions(version, published_at_ms, document) VALUES ($1, $2, $3)",
                  Params(record.version, record.published_at_ms, record.document));
  });
}

Status PostgresStore::RemoveCmsVersions(const std::vector<CmsVersionRecord>& versions) {
  return Transact("removing CMS versions", TxMode::kWrite, [&](Tx& tx) -> Status {
    for (const CmsVersionRecord& record : versions) {
      if (auto s = tx.Run("removing a CMS version",
                          "DELETE FROM cms_versions WHERE version = $1 AND published_at_ms = $2 AND document = $3",
                          Params(record.version, record.published_at_ms, record.document));
          !s) {
        return s;
      }
      if (auto s = tx.Run("removing a CMS version's change record",
                          "DELETE FROM change_log WHERE module = 'cms' AND key = $1 AND payload = $2",
                          Params(CmsVersionChangeKey(record.version), CmsVersionPayloadJson(record)));
          !s) {
        return s;
      }
    }
    return OkStatus();
  });
}

// ---- Users -------------------------------------------------------------------------

Status PostgresStore::AddUsers(const std::vector<UserRecord>& users) {
  const std::string sql =
      fmt::format("INSERT INTO users({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)", kUserColumns);
  return Transact("adding users", TxMode::kWrite, [&](Tx& tx) -> Status {
    for (const UserRecord& user : users) {
      auto inserted = tx.Run("adding users", sql.c_str(),
                             Params(user.uri, user.username, user.domain, user.home_pool, user.ha1_md5,
                                    user.ha1_sha256, user.ha1_md5_full, user.ha1_sha256_full, user.created_at_ms));
      if (!inserted) {
        if (tx.sqlstate() == "23505") {
          return MakeError(ErrorCode::kAlreadyExists, fmt::format("user {} is already provisioned", user.uri));
        }
        return inserted;
      }
      tx.LogChange({0, user.created_at_ms, "user", user.home_pool, user.uri, "upsert", UserPayloadJson(user)});
    }
    return OkStatus();
  });
}

Status PostgresStore::RemoveUser(const std::string& uri) {
  return Transact("removing a user", TxMode::kWrite, [&](Tx& tx) -> Status {
    auto removed = tx.Query("removing a user", "DELETE FROM users WHERE uri = $1 RETURNING home_pool", Params(uri));
    if (!removed) return std::unexpected(removed.error());
    if (PQntuples(removed->get()) == 0) {
      return MakeError(ErrorCode::kNotFound, fmt::format("user {} is not provisioned", uri));
    }
    tx.LogChange({0, NowUnixMillis(), "user", Text(removed->get(), 0, 0), uri, "delete", ""});
    return OkStatus();
  });
}

Result<std::optional<UserRecord>> PostgresStore::FindUser(const std::string& username, const std::string& domain) {
  std::optional<UserRecord> user;
  const std::string sql = fmt::format("SELECT {} FROM users WHERE username = $1 AND domain = $2", kUserColumns);
  auto read = Transact("finding a user", TxMode::kAutocommit, [&](Tx& tx) -> Status {
    auto result = tx.Query("finding a user", sql.c_str(), Params(username, domain));
    if (!result) return std::unexpected(result.error());
    user.reset();
    if (PQntuples(result->get()) == 1) user = ReadUserRow(result->get(), 0);
    return OkStatus();
  });
  if (!read) return std::unexpected(read.error());
  return user;
}

Result<std::vector<UserRecord>> PostgresStore::ListUsers() {
  std::vector<UserRecord> users;
  const std::string sql = fmt::format("SELECT {} FROM users ORDER BY uri", kUserColumns);
  auto read = Transact("listing users", TxMode::kAutocommit, [&](Tx& tx) -> Status {
    auto result = tx.Query("listing users", sql.c_str());
    if (!result) return std::unexpected(result.error());
    users.clear();
    for (int row = 0; row < PQntuples(result->get()); ++row) users.push_back(ReadUserRow(result->get(), row));
    return OkStatus();
  });
  if (!read) return std::unexpected(read.error());
  return users;
}

Status PostgresStore::RenewLease(const LeaseRecord& lease) {
  return Transact("renewing a lease", TxMode::kWrite, [&](Tx& tx) -> Status {
    return tx.Run("renewing a lease",
                  "INSERT INTO pool_leases(server_id, pool, renewed_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4) "
                  "ON CONFLICT (server_id) DO UPDATE SET pool = EXCLUDED.pool, renewed_at_ms = EXCLUDED.renewed_at_ms, "
                  "expires_at_ms = EXCLUDED.expires_at_ms",
                  Params(lease.server_id, lease.pool, lease.renewed_at_ms, lease.expires_at_ms));
  }, /*idempotent=*/true);
}

Status PostgresStore::ReleaseLease(const std::string& server_id) {
  return Transact("releasing a lease", TxMode::kWrite, [&](Tx& tx) -> Status {
    return tx.Run("releasing a lease", "DELETE FROM pool_leases WHERE server_id = $1", Params(server_id));
  }, /*idempotent=*/true);
}

Result<std::vector<LeaseRecord>> PostgresStore::ListLeases(const std::string& pool) {
  std::vector<LeaseRecord> leases;
  auto read = Transact("listing leases", TxMode::kAutocommit, [&](Tx& tx) -> Status {
    auto result = tx.Query("listing leases",
                           "SELECT server_id, pool, renewed_at_ms, expires_at_ms FROM pool_leases WHERE pool = $1 "
                           "ORDER BY server_id",
                           Params(pool));
    if (!result) return std::unexpected(result.error());
    leases.clear();
    for (int row = 0; row < PQntuples(result->get()); ++row) {
      leases.push_back(LeaseRecord{Text(result->get(), row, 0), Text(result->get(), row, 1),
                                   Int(result->get(), row, 2), Int(result->get(), row, 3)});
    }
    return OkStatus();
  });
  if (!read) return std::unexpected(read.error());
  return leases;
}

Result<std::vector<ChangeRecord>> PostgresStore::ReadChanges(int64_t after_seq, int limit) {
  return ReadChangesOf(std::nullopt, after_seq, limit);
}

Result<std::vector<ChangeRecord>> PostgresStore::ReadChangesOf(std::optional<std::string_view> module,
                                                               int64_t after_seq, int limit) {
  std::vector<ChangeRecord> changes;
  // As in SQLite, a negative limit means no limit.
  int64_t rows = limit < 0 ? INT64_MAX : limit;
  Params params(after_seq, rows);
  if (module) params.Add(*module);
  auto read = Transact("reading the change log", TxMode::kAutocommit, [&](Tx& tx) -> Status {
    auto result = tx.Query("reading the change log",
                           module ? "SELECT seq, at_ms, module, home_pool, key, op, payload FROM change_log "
                                    "WHERE module = $3 AND seq > $1 ORDER BY seq LIMIT $2"
                                  : "SELECT seq, at_ms, module, home_pool, key, op, payload FROM change_log "
                                    "WHERE seq > $1 ORDER BY seq LIMIT $2",
                           params);
    if (!result) return std::unexpected(result.error());
    changes.clear();
    const PGresult* r = result->get();
    for (int row = 0; row < PQntuples(r); ++row) {
      changes.push_back(ChangeRecord{Int(r, row, 0), Int(r, row, 1), Text(r, row, 2), Text(r, row, 3),
                                     Text(r, row, 4), Text(r, row, 5), Text(r, row, 6)});
    }
    return OkStatus();
  });
  if (!read) return std::unexpected(read.error());
  return changes;
}

// ---- User data -------------------------------------------------------------------

Result<std::string> PostgresStore::UserHomePool(Tx& tx, const std::string& uri) {
  auto result = tx.Query("finding a user", "SELECT home_pool FROM users WHERE uri = $1", Params(uri));
  if (!result) return std::unexpected(result.error());
  if (PQntuples(result->get()) == 0) {
    return MakeError(ErrorCode::kNotFound, fmt::format("user {} is not provisioned", uri));
  }
  return Text(result->get(), 0, 0);
}

Status PostgresStore::UpsertContact(const ContactRecord& contact) {
  if (contact.contact.empty()) return MakeError(ErrorCode::kInvalidArgument, "the contact URI is empty");
  if (contact.contact == contact.owner) {
    return MakeError(ErrorCode::kInvalidArgument, fmt::format("{} cannot be a contact of itself", contact.owner));
  }
  if (auto s = CheckText("the contact URI", contact.contact); !s) return s;
  if (auto s = CheckText("the display name", contact.display_name); !s) return s;
  if (auto s = CheckTexts("a group name", contact.groups); !s) return s;
  return Transact("writing a contact", TxMode::kWrite, [&](Tx& tx) -> Status {
    auto home_pool = UserHomePool(tx, contact.owner);
    if (!home_pool) return std::unexpected(home_pool.error());
    ContactRecord row = contact;
    row.groups = WithoutDuplicates(contact.groups);
    row.home_pool = *home_pool;
    row.updated_at_ms = NowUnixMillis();
    for (const std::string& group : row.groups) {
      auto found = tx.Query("reading contact groups", "SELECT 1 FROM contact_groups WHERE owner = $1 AND name = $2",
                            Params(row.owner, group));
      if (!found) return std::unexpected(found.error());
      if (PQntuples(found->get()) == 0) {
        return MakeError(ErrorCode::kFailedPrecondition,
                         fmt::format("{} has no contact group '{}'; add the group first", row.owner, group));
      }
    }
    if (auto s = tx.Run("writing a contact",
                        "INSERT INTO contacts(owner, contact, display_name, groups, home_pool, updated_at_ms) "
                        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (owner, contact) DO UPDATE SET "
                        "display_name = EXCLUDED.display_name, groups = EXCLUDED.groups, "
                        "home_pool = EXCLUDED.home_pool, updated_at_ms = EXCLUDED.updated_at_ms",
                        Params(row.owner, row.contact, row.display_name, Dump(json(row.groups)), row.home_pool,
                               row.updated_at_ms));
        !s) {
      return s;
    }
    tx.LogChange({0, row.updated_at_ms, "user", row.home_pool, ContactChangeKey(row.owner, row.contact), "upsert",
                  ContactPayloadJson(row)});
    return OkStatus();
  });
}

Status PostgresStore::RemoveContact(const std::string& owner, const std::string& contact) {
  return Transact("removing a contact", TxMode::kWrite, [&](Tx& tx) -> Status {
    auto home_pool = UserHomePool(tx, owner);
    if (!home_pool) return std::unexpected(home_pool.error());
    auto removed = tx.Query("removing a contact", "DELETE FROM contacts WHERE owner = $1 AND contact = $2",
                            Params(owner, contact));
    if (!removed) return std::unexpected(removed.error());
    if (std::string_view(PQcmdTuples(removed->get())) == "0") {
      return MakeError(ErrorCode::kNotFound, fmt::format("{} has no contact {}", owner, contact));
    }
    tx.LogChange({0, NowUnixMillis(), "user", *home_pool, ContactChangeKey(owner, contact), "delete", ""});
    return OkStatus();
  });
}

Result<std::vector<ContactRecord>> PostgresStore::ListContactsIn(Tx& tx, const std::string& owner) {
  auto result = tx.Query("listing contacts",
                         "SELECT owner, contact, display_name, groups, home_pool, updated_at_ms FROM contacts "
                         "WHERE owner = $1 ORDER BY contact",
                         Params(owner));
  if (!result) return std::unexpected(result.error());
  const PGresult* r = result->get();
  std::vector<ContactRecord> contacts;
  for (int row = 0; row < PQntuples(r); ++row) {
    ContactRecord contact{Text(r, row, 0), Text(r, row, 1), Text(r, row, 2), {}, Text(r, row, 4), Int(r, row, 5)};
    auto groups = ParseStringList(Text(r, row, 3), "group list of contact " + contact.contact);
    if (!groups) return std::unexpected(groups.error());
    contact.groups = std::move(*groups);
    contacts.push_back(std::move(contact));
  }
  return contacts;
}

Result<std::vector<ContactRecord>> PostgresStore::ListContacts(const std::string& owner) {
  std::vector<ContactRecord> contacts;
  auto read = Transact("listing contacts", TxMode::kRead, [&](Tx& tx) -> Status {
    if (auto home_pool = UserHomePool(tx, owner); !home_pool) return std::unexpected(home_pool.error());
    auto listed = ListContactsIn(tx, owner);
    if (!listed) return std::unexpected(listed.error());
    contacts = std::move(*listed);
    return OkStatus();
  });
  if (!read) return std::unexpected(read.error());
  return contacts;
}

Status PostgresStore::AddContactGroup(const std::string& owner, const std::string& name) {
  if (name.empty()) return MakeError(ErrorCode::kInvalidArgument, "the group name is empty");
  if (auto s = CheckText("the group name", name); !s) return s;
  return Transact("adding a contact group", TxMode::kWrite, [&](Tx& tx) -> Status {
    auto home_pool = UserHomePool(tx, owner);
    if (!home_pool) return std::unexpected(home_pool.error());
    ContactGroupRecord group{owner, name, *home_pool, NowUnixMillis()};
    auto inserted = tx.Run("adding a contact group",
                           "INSERT INTO contact_groups(owner, name, home_pool, created_at_ms) VALUES ($1, $2, $3, $4)",
                           Params(group.owner, group.name, group.home_pool, group.created_at_ms));
    if (!inserted) {
      if (tx.sqlstate() == "23505") {
        return MakeError(ErrorCode::kAlreadyExists, fmt::format("{} already has a contact group '{}'", owner, name));
      }
      return inserted;
    }
    tx.LogChange({0, group.created_at_ms, "user", group.home_pool, ContactGroupChangeKey(owner, name), "upsert",
                  ContactGroupPayloadJson(group)});
    return OkStatus();
  });
}

Status PostgresStore::RemoveContactGroup(const std::string& owner, const std::string& name) {
  return Transact("removing a contact group", TxMode::kWrite, [&](Tx& tx) -> Status {
    auto home_pool = UserHomePool(tx, owner);
    if (!home_pool) return std::unexpected(home_pool.error());
    auto members = tx.Query("reading contact groups",
                            "SELECT COUNT(*) FROM contacts WHERE owner = $1 AND groups::jsonb ? $2",
                            Params(owner, name));
    if (!members) return std::unexpected(members.error());
    if (int64_t count = Int(members->get(), 0, 0); count > 0) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       fmt::format("contact group '{}' of {} still holds {} contact{}; take them out of it first",
                                   name, owner, count, count == 1 ? "" : "s"));
    }
    auto removed = tx.Query("removing a contact group", "DELETE FROM contact_groups WHERE owner = $1 AND name = $2",
                            Params(owner, name));
    if (!removed) return std::unexpected(removed.error());
    if (std::string_view(PQcmdTuples(removed->get())) == "0") {
      return MakeError(ErrorCode::kNotFound, fmt::format("{} has no contact group '{}'", owner, name));
    }
    tx.LogChange({0, NowUnixMillis(), "user", *home_pool, ContactGroupChangeKey(owner, name), "delete", ""});
    return OkStatus();
  });
}

Result<std::vector<ContactGroupRecord>> PostgresStore::ListContactGroups(const std::string& owner) {
  std::vector<ContactGroupRecord> groups;
  auto read = Transact("listing contact groups", TxMode::kRead, [&](Tx& tx) -> Status {
    if (auto home_pool = UserHomePool(tx, owner); !home_pool) return std::unexpected(home_pool.error());
    auto result = tx.Query("listing contact groups",
                           "SELECT owner, name, home_pool, created_at_ms FROM contact_groups WHERE owner = $1 "
                           "ORDER BY name",
                           Params(owner));
    if (!result) return std::unexpected(result.error());
    groups.clear();
    const PGresult* r = result->get();
    for (int row = 0; row < PQntuples(r); ++row) {
      groups.push_back(ContactGroupRecord{Text(r, row, 0), Text(r, row, 1), Text(r, row, 2), Int(r, row, 3)});
    }
    return OkStatus();
  });
  if (!read) return std::unexpected(read.error());
  return groups;
}

Status PostgresStore::SetPresenceNote(const std::string& owner, const std::string& note) {
  if (auto s = CheckText("the presence note", note); !s) return s;
  return Transact("writing a presence note", TxMode::kWrite, [&](Tx& tx) -> Status {
    auto home_pool = UserHomePool(tx, owner);
    if (!home_pool) return std::unexpected(home_pool.error());
    PresenceNoteRecord row{owner, note, *home_pool, NowUnixMillis()};
    if (auto s = tx.Run("writing a presence note",
                        "INSERT INTO presence_notes(owner, note, home_pool, updated_at_ms) VALUES ($1, $2, $3, $4) "
                        "ON CONFLICT (owner) DO UPDATE SET note = EXCLUDED.note, home_pool = EXCLUDED.home_pool, "
                        "updated_at_ms = EXCLUDED.updated_at_ms",
                        Params(row.owner, row.note, row.home_pool, row.updated_at_ms));
        !s) {
      return s;
    }
    tx.LogChange({0, row.updated_at_ms, "user", row.home_pool, PresenceNoteChangeKey(owner), "upsert",
                  PresenceNotePayloadJson(row)});
    return OkStatus();
  });
}

Result<PresenceNoteRecord> PostgresStore::GetPresenceNote(const std::string& owner) {
  PresenceNoteRecord note;
  auto read = Transact("reading a presence note", TxMode::kRead, [&](Tx& tx) -> Status {
    auto home_pool = UserHomePool(tx, owner);
    if (!home_pool) return std::unexpected(home_pool.error());
    note = PresenceNoteRecord{owner, "", *home_pool, 0};
    auto result = tx.Query("reading a presence note",
                           "SELECT note, home_pool, updated_at_ms FROM presence_notes WHERE owner = $1", Params(owner));
    if (!result) return std::unexpected(result.error());
    if (PQntuples(result->get()) == 1) {
      note.note = Text(result->get(), 0, 0);
      note.home_pool = Text(result->get(), 0, 1);
      note.updated_at_ms = Int(result->get(), 0, 2);
    }
    return OkStatus();
  });
  if (!read) return std::unexpected(read.error());
  return note;
}

Result<PrivacySettings> PostgresStore::GetPrivacyIn(Tx& tx, const std::string& owner) {
  PrivacySettings privacy;
  privacy.owner = owner;
  auto result = tx.Query(
      "reading privacy settings",
      "SELECT policy, allow_list, block_list, home_pool, updated_at_ms FROM privacy_settings WHERE owner = $1",
      Params(owner));
  if (!result) return std::unexpected(result.error());
  const PGresult* r = result->get();
  if (PQntuples(r) == 0) return privacy;
  auto policy = ParsePrivacyPolicy(Text(r, 0, 0));
  if (!policy) return MakeError(ErrorCode::kCorruption, fmt::format("privacy policy of {} is unknown", owner));
  auto allow = ParseStringList(Text(r, 0, 1), "allow list of " + owner);
  if (!allow) return std::unexpected(allow.error());
  auto block = ParseStringList(Text(r, 0, 2), "block list of " + owner);
  if (!block) return std::unexpected(block.error());
  privacy.policy = *policy;
  privacy.allow = std::move(*allow);
  privacy.block = std::move(*block);
  privacy.home_pool = Text(r, 0, 3);
  privacy.updated_at_ms = Int(r, 0, 4);
  return privacy;
}

Result<PrivacySettings> PostgresStore::UpdatePrivacy(const std::string& owner, const PrivacyUpdate& update) {
  if (update.allow) {
    if (auto s = CheckTexts("an allow-list entry", *update.allow); !s) return std::unexpected(s.error());
  }
  if (update.block) {
    if (auto s = CheckTexts("a block-list entry", *update.block); !s) return std::unexpected(s.error());
  }
  PrivacySettings privacy;
  auto written = Transact("writing privacy settings", TxMode::kWrite, [&](Tx& tx) -> Status {
    auto home_pool = UserHomePool(tx, owner);
    if (!home_pool) return std::unexpected(home_pool.error());
    auto current = GetPrivacyIn(tx, owner);
    if (!current) return std::unexpected(current.error());
    privacy = std::move(*current);
    if (update.policy) privacy.policy = *update.policy;
    if (update.allow) privacy.allow = WithoutDuplicates(*update.allow);
    if (update.block) privacy.block = WithoutDuplicates(*update.block);
    privacy.home_pool = *home_pool;
    privacy.updated_at_ms = NowUnixMillis();
    if (auto s = tx.Run("writing privacy settings",
                        "INSERT INTO privacy_settings(owner, policy, allow_list, block_list, home_pool, updated_at_ms) "
                        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (owner) DO UPDATE SET policy = EXCLUDED.policy, "
                        "allow_list = EXCLUDED.allow_list, block_list = EXCLUDED.block_list, "
                        "home_pool = EXCLUDED.home_pool, updated_at_ms = EXCLUDED.updated_at_ms",
                        Params(owner, PrivacyPolicyName(privacy.policy), Dump(json(privacy.allow)),
                               Dump(json(privacy.block)), privacy.home_pool, privacy.updated_at_ms));
        !s) {
      return s;
    }
    tx.LogChange({0, privacy.updated_at_ms, "user", privacy.home_pool, PrivacyChangeKey(owner), "upsert",
                  PrivacyPayloadJson(privacy)});
    return OkStatus();
  });
  if (!written) return std::unexpected(written.error());
  return privacy;
}

Result<PrivacySettings> PostgresStore::GetPrivacy(const std::string& owner) {
  PrivacySettings privacy;
  auto read = Transact("reading privacy settings", TxMode::kRead, [&](Tx& tx) -> Status {
    auto home_pool = UserHomePool(tx, owner);
    if (!home_pool) return std::unexpected(home_pool.error());
    auto current = GetPrivacyIn(tx, owner);
    if (!current) return std::unexpected(current.error());
    privacy = std::move(*current);
    if (privacy.home_pool.empty()) privacy.home_pool = *home_pool;
    return OkStatus();
  });
  if (!read) return std::unexpected(read.error());
  return privacy;
}

Result<PresencePolicy> PostgresStore::GetPresencePolicy(const std::string& owner) {
  PresencePolicy policy;
  auto read = Transact("reading a presence policy", TxMode::kRead, [&](Tx& tx) -> Status {
    policy = PresencePolicy{};
    policy.owner = owner;
    auto home_pool = UserHomePool(tx, owner);
    if (!home_pool) return std::unexpected(home_pool.error());
    auto privacy = GetPrivacyIn(tx, owner);
    if (!privacy) return std::unexpected(privacy.error());
    policy.privacy = std::move(*privacy);
    if (policy.privacy.home_pool.empty()) policy.privacy.home_pool = *home_pool;
    auto result = tx.Query("reading contacts", "SELECT contact FROM contacts WHERE owner = $1 ORDER BY contact",
                           Params(owner));
    if (!result) return std::unexpected(result.error());
    for (int row = 0; row < PQntuples(result->get()); ++row) policy.contacts.push_back(Text(result->get(), row, 0));
    return OkStatus();
  });
  if (!read) return std::unexpected(read.error());
  return policy;
}

// ---- Conference data -------------------------------------------------------------

Result<std::optional<MeetingRecord>> PostgresStore::GetMeetingIn(Tx& tx, const std::string& id) {
  const std::string sql = fmt::format("SELECT {} FROM meetings WHERE id = $1", kMeetingColumns);
  auto result = tx.Query("reading a meeting", sql.c_str(), Params(id));
  if (!result) return std::unexpected(result.error());
  if (PQntuples(result->get()) == 0) return std::optional<MeetingRecord>();
  auto meeting = ReadMeetingRow(result->get(), 0);
  if (!meeting) return std::unexpected(meeting.error());
  return std::optional<MeetingRecord>(std::move(*meeting));
}

Status PostgresStore::WriteMeeting(Tx& tx, const MeetingRecord& meeting, bool insert) {
  std::string sql = fmt::format("INSERT INTO meetings({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                                kMeetingColumns);
  if (!insert) {
    sql += " ON CONFLICT (id) DO UPDATE SET organizer = EXCLUDED.organizer, home_pool = EXCLUDED.home_pool, "
           "subject = EXCLUDED.subject, start_ms = EXCLUDED.start_ms, end_ms = EXCLUDED.end_ms, "
           "attendees = EXCLUDED.attendees, pin = EXCLUDED.pin, lobby = EXCLUDED.lobby, state = EXCLUDED.state, "
           "created_ms = EXCLUDED.created_ms, updated_ms = EXCLUDED.updated_ms";
  }
  auto written = tx.Run("writing a meeting", sql.c_str(),
                        Params(meeting.id, meeting.organizer, meeting.home_pool, meeting.subject, meeting.start_ms,
                               meeting.end_ms, Dump(json(meeting.attendees)), meeting.pin,
                               LobbyPolicyName(meeting.lobby), MeetingStateName(meeting.state), meeting.created_ms,
                               meeting.updated_ms));
  if (!written) {
    if (insert && tx.sqlstate() == "23505") {
      return MakeError(ErrorCode::kAlreadyExists, fmt::format("meeting id {} is already taken", meeting.id));
    }
    return written;
  }
  tx.LogChange({0, meeting.updated_ms, "conference", meeting.home_pool, MeetingChangeKey(meeting.id), "upsert",
                MeetingPayloadJson(meeting)});
  return OkStatus();
}

Result<MeetingRecord> PostgresStore::CreateMeeting(const MeetingRecord& meeting) {
  if (auto s = CheckMeeting(meeting); !s) return std::unexpected(s.error());
  MeetingRecord row;
  auto written = Transact("creating a meeting", TxMode::kWrite, [&](Tx& tx) -> Status {
    row = meeting;
    auto home_pool = UserHomePool(tx, meeting.organizer);
    if (!home_pool) return std::unexpected(home_pool.error());
    auto existing = GetMeetingIn(tx, meeting.id);
    if (!existing) return std::unexpected(existing.error());
    if (existing->has_value()) {
      return MakeError(ErrorCode::kAlreadyExists, fmt::format("meeting id {} is already taken", meeting.id));
    }
    row.attendees = WithoutDuplicates(meeting.attendees);
    row.home_pool = *home_pool;
    row.state = MeetingState::kScheduled;
    row.created_ms = row.updated_ms = NowUnixMillis();
    return WriteMeeting(tx, row, /*insert=*/true);
  });
  if (!written) return std::unexpected(written.error());
  return row;
}

Result<MeetingRecord> PostgresStore::UpdateMeeting(const std::string& id, const MeetingUpdate& update) {
  MeetingRecord row;
  auto written = Transact("updating a meeting", TxMode::kWrite, [&](Tx& tx) -> Status {
    auto existing = GetMeetingIn(tx, id);
    if (!existing) return std::unexpected(existing.error());
    auto updated = ApplyMeetingUpdate(std::move(*existing), id, update);
    if (!updated) return std::unexpected(updated.error());
    row = std::move(*updated);
    return WriteMeeting(tx, row, /*insert=*/false);
  });
  if (!written) return std::unexpected(written.error());
  return row;
}

Result<MeetingRecord> PostgresStore::CancelMeeting(const std::string& id) {
  MeetingRecord row;
  auto written = Transact("cancelling a meeting", TxMode::kWrite, [&](Tx& tx) -> Status {
    auto existing = GetMeetingIn(tx, id);
    if (!existing) return std::unexpected(existing.error());
    if (!existing->has_value()) return MakeError(ErrorCode::kNotFound, fmt::format("meeting {} does not exist", id));
    row = std::move(**existing);
    if (row.state == MeetingState::kCancelled) {
      return MakeError(ErrorCode::kFailedPrecondition, fmt::format("meeting {} is already cancelled", id));
    }
    row.state = MeetingState::kCancelled;
    row.updated_ms = std::max(NowUnixMillis(), row.updated_ms);
    return WriteMeeting(tx, row, /*insert=*/false);
  });
  if (!written) return std::unexpected(written.error());
  return row;
}

Result<std::optional<MeetingRecord>> PostgresStore::GetMeeting(const std::string& id) {
  std::optional<MeetingRecord> meeting;
  auto read = Transact("reading a meeting", TxMode::kAutocommit, [&](Tx& tx) -> Status {
    auto found = GetMeetingIn(tx, id);
    if (!found) return std::unexpected(found.error());
    meeting = std::move(*found);
    return OkStatus();
  });
  if (!read) return std::unexpected(read.error());
  return meeting;
}

Result<std::vector<MeetingRecord>> PostgresStore::ListMeetings(const MeetingFilter& filter) {
  std::string sql = fmt::format("SELECT {} FROM meetings WHERE TRUE", kMeetingColumns);
  Params params;
  int index = 0;
  if (filter.organizer) {
    sql += fmt::format(" AND organizer = ${}", ++index);
    params.Add(*filter.organizer);
  }
  if (filter.home_pool) {
    sql += fmt::format(" AND home_pool = ${}", ++index);
    params.Add(*filter.home_pool);
  }
  sql += " ORDER BY start_ms, id";
  std::vector<MeetingRecord> meetings;
  auto read = Transact("listing meetings", TxMode::kAutocommit, [&](Tx& tx) -> Status {
    auto result = tx.Query("listing meetings", sql.c_str(), params);
    if (!result) return std::unexpected(result.error());
    meetings.clear();
    for (int row = 0; row < PQntuples(result->get()); ++row) {
      auto meeting = ReadMeetingRow(result->get(), row);
      if (!meeting) return std::unexpected(meeting.error());
      meetings.push_back(std::move(*meeting));
    }
    return OkStatus();
  });
  if (!read) return std::unexpected(read.error());
  return meetings;
}

Result<ContentInfo> PostgresStore::PutContent(const ContentInfo& info, std::string_view bytes) {
  if (auto checked = CheckContentInfo(info); !checked) return std::unexpected(checked.error());
  ContentInfo stored = info;
  auto written = Transact("writing meeting content", TxMode::kWrite, [&](Tx& tx) -> Status {
    auto meeting = GetMeetingIn(tx, info.meeting_id);
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
    if (auto s = tx.Run("writing meeting content",
                        "INSERT INTO meeting_content(meeting_id, name, size, sha256, home_pool, uploaded_ms, content) "
                        "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (meeting_id, name) DO UPDATE SET "
                        "size = EXCLUDED.size, sha256 = EXCLUDED.sha256, home_pool = EXCLUDED.home_pool, "
                        "uploaded_ms = EXCLUDED.uploaded_ms, content = EXCLUDED.content",
                        Params(stored.meeting_id, stored.name, stored.size, stored.sha256, stored.home_pool,
                               stored.uploaded_ms, Bytes{bytes}));
        !s) {
      return s;
    }
    tx.LogChange({0, stored.uploaded_ms, "conference", stored.home_pool,
                  ContentChangeKey(stored.meeting_id, stored.name), "upsert", ContentPayloadJson(stored, bytes)});
    return OkStatus();
  });
  if (!written) return std::unexpected(written.error());
  return stored;
}

Result<std::optional<ContentRecord>> PostgresStore::GetContent(const std::string& meeting_id, const std::string& name) {
  std::optional<ContentRecord> content;
  const std::string sql =
      fmt::format("SELECT {}, content FROM meeting_content WHERE meeting_id = $1 AND name = $2", kContentInfoColumns);
  auto read = Transact("reading meeting content", TxMode::kAutocommit, [&](Tx& tx) -> Status {
    auto result = tx.Query("reading meeting content", sql.c_str(), Params(meeting_id, name));
    if (!result) return std::unexpected(result.error());
    content.reset();
    if (PQntuples(result->get()) == 1) {
      content = ContentRecord{ReadContentInfoRow(result->get(), 0), Text(result->get(), 0, 6)};  // BYTEA, raw
    }
    return OkStatus();
  });
  if (!read) return std::unexpected(read.error());
  return content;
}

Result<std::vector<ContentInfo>> PostgresStore::ListContent(const std::string& meeting_id) {
  std::vector<ContentInfo> files;
  const std::string sql =
      fmt::format("SELECT {} FROM meeting_content WHERE meeting_id = $1 ORDER BY name", kContentInfoColumns);
  auto read = Transact("listing meeting content", TxMode::kRead, [&](Tx& tx) -> Status {
    auto meeting = tx.Query("reading a meeting", "SELECT 1 FROM meetings WHERE id = $1", Params(meeting_id));
    if (!meeting) return std::unexpected(meeting.error());
    if (PQntuples(meeting->get()) == 0) {
      return MakeError(ErrorCode::kNotFound, fmt::format("meeting {} does not exist", meeting_id));
    }
    auto result = tx.Query("listing meeting content", sql.c_str(), Params(meeting_id));
    if (!result) return std::unexpected(result.error());
    files.clear();
    for (int row = 0; row < PQntuples(result->get()); ++row) files.push_back(ReadContentInfoRow(result->get(), row));
    return OkStatus();
  });
  if (!read) return std::unexpected(read.error());
  return files;
}

}  // namespace

Result<std::unique_ptr<Store>> OpenPostgresStore(const std::string& dsn, const PostgresStoreOptions& options) {
  auto store = std::make_unique<PostgresStore>(dsn, options);
  if (auto status = store->Migrate(); !status) return std::unexpected(status.error());
  return std::unique_ptr<Store>(std::move(store));
}

Result<std::unique_ptr<Store>> OpenPostgresStore(const std::string& dsn) {
  return OpenPostgresStore(dsn, PostgresStoreOptions{});
}

// ---- Replication ------------------------------------------------------------------

namespace {

std::string PgPlaceholder(int index) { return fmt::format("${}", index); }

void AddValue(Params& params, const SqlValue& value) {
  if (const auto* text = std::get_if<std::string>(&value)) {
    params.Add(std::string_view(*text));
  } else if (const auto* number = std::get_if<int64_t>(&value)) {
    params.Add(*number);
  } else {
    params.Add(Bytes{std::get<SqlBytes>(value).bytes});
  }
}

// A server-side cursor, fetched a few thousand rows at a time, so a scan of millions
// of rows holds only that many (several cursors stay open in one transaction).
class PgCursor final : public RowCursor {
 public:
  static constexpr int kFetchRows = 2000;

  PgCursor(Tx& tx, const char* name, const char* types)
      : tx_(tx), fetch_(fmt::format("FETCH {} FROM scan_{}", kFetchRows, name)), types_(types) {}

  Result<bool> Next(SqlRow* row) override {
    if (next_ == rows_) {
      if (done_) return false;
      auto fetched = tx_.Query("scanning rows", fetch_.c_str());
      if (!fetched) return std::unexpected(fetched.error());
      result_ = std::move(*fetched);
      rows_ = PQntuples(result_.get());
      next_ = 0;
      done_ = rows_ < kFetchRows;
      if (rows_ == 0) return false;
    }
    row->clear();
    for (int i = 0; types_[i] != '\0'; ++i) {
      if (types_[i] == 'i') {
        row->emplace_back(Int(result_.get(), next_, i));
      } else if (types_[i] == 't') {
        row->emplace_back(Text(result_.get(), next_, i));
      } else {
        row->emplace_back(SqlBytes{Text(result_.get(), next_, i)});  // BYTEA, raw in binary format
      }
    }
    ++next_;
    return true;
  }

 private:
  Tx& tx_;
  std::string fetch_;
  const char* types_;
  PgResult result_;
  int rows_ = 0;
  int next_ = 0;
  bool done_ = false;
};

constexpr const char* kImportColumns =
    "source_pool, module, applied_seq, applied_at_ms, source_at_ms, snapshot_seq";

ImportProgress ReadImportRow(const PGresult* r, int row) {
  return ImportProgress{Text(r, row, 0), Text(r, row, 1), Int(r, row, 2), Int(r, row, 3), Int(r, row, 4),
                        Int(r, row, 5)};
}

// Rows in COPY's binary format (PostgreSQL manual, COPY, "Binary Format"): a header,
// each row as its field count and each field's length and bytes, a trailer.
class CopyData {
 public:
  CopyData() {
    text_.append("PGCOPY\n\377\r\n\0", 11);
    Int32(0);  // flags
    Int32(0);  // header extension length
  }
  void Row(const SqlRow& values) {
    Int16(static_cast<int16_t>(values.size()));
    for (const SqlValue& value : values) {
      if (const auto* number = std::get_if<int64_t>(&value)) {
        Int32(sizeof(int64_t));
        uint64_t big_endian = htobe64(static_cast<uint64_t>(*number));
        text_.append(reinterpret_cast<const char*>(&big_endian), sizeof big_endian);
        continue;
      }
      const auto* text = std::get_if<std::string>(&value);
      const std::string& bytes = text ? *text : std::get<SqlBytes>(value).bytes;  // TEXT and BYTEA: as they are
      TANDEM_CHECK(bytes.size() <= static_cast<size_t>(INT32_MAX));
      Int32(static_cast<int32_t>(bytes.size()));
      text_ += bytes;
    }
  }
  std::string Finish() {
    Int16(-1);
    return std::move(text_);
  }

 private:
  void Int16(int16_t value) {
    uint16_t big_endian = htobe16(static_cast<uint16_t>(value));
    text_.append(reinterpret_cast<const char*>(&big_endian), sizeof big_endian);
  }
  void Int32(int32_t value) {
    uint32_t big_endian = htobe32(static_cast<uint32_t>(value));
    text_.append(reinterpret_cast<const char*>(&big_endian), sizeof big_endian);
  }

  std::string text_;
};

// The write side of replication inside a kWrite transaction.
class PgReplicationTx final : public ReplicationTx {
 public:
  // Rows per multi-row INSERT: well under 65,535 parameters, and a few MB of them.
  static constexpr size_t kMaxParams = 30'000;
  static constexpr size_t kMaxBytes = 8 << 20;

  explicit PgReplicationTx(Tx& tx) : tx_(tx) {}

  Result<ImportProgress> LockImportProgress(std::string_view source_pool, std::string_view module) override {
    // The row lock serializes applies of one source and module (a batch resent while
    // the first send is still applying is then skipped by seq).
    if (auto s = tx_.Run("reading import progress",
                         "INSERT INTO import_progress(source_pool, module, applied_seq, applied_at_ms, source_at_ms, "
                         "snapshot_seq) VALUES ($1, $2, 0, 0, 0, 0) ON CONFLICT DO NOTHING",
                         Params(source_pool, module));
        !s) {
      return std::unexpected(s.error());
    }
    const std::string sql =
        fmt::format("SELECT {} FROM import_progress WHERE source_pool = $1 AND module = $2 FOR UPDATE", kImportColumns);
    auto result = tx_.Query("reading import progress", sql.c_str(), Params(source_pool, module));
    if (!result) return std::unexpected(result.error());
    TANDEM_CHECK(PQntuples(result->get()) == 1);
    return ReadImportRow(result->get(), 0);
  }

  Status SaveImportProgress(const ImportProgress& p) override {
    return tx_.Run("writing import progress",
                   "UPDATE import_progress SET applied_seq = $3, applied_at_ms = $4, source_at_ms = $5, "
                   "snapshot_seq = $6 WHERE source_pool = $1 AND module = $2",
                   Params(p.source_pool, p.module, p.applied_seq, p.applied_at_ms, p.source_at_ms, p.snapshot_seq));
  }

  Status Upsert(const ReplicatedTable& table, std::span<const RowWrite* const> rows) override {
    return rows.size() >= kCopyRows ? CopyUpsert(table, rows) : InsertUpsert(table, rows);
  }

  Status Remove(const ReplicatedTable& table, std::span<const RowWrite* const> rows) override {
    const std::string sql = DeleteSql(table, PgPlaceholder);
    for (const RowWrite* row : rows) {
      Params params;
      for (const SqlValue& value : row->values) AddValue(params, value);
      if (auto s = tx_.Run(fmt::format("removing from {}", table.name), sql.c_str(), params); !s) return s;
    }
    return OkStatus();
  }

  Status RemovePool(const ReplicatedTable& table, std::string_view home_pool) override {
    return tx_.Run(fmt::format("clearing {} for a snapshot", table.name), DeletePoolSql(table, PgPlaceholder).c_str(),
                   Params(home_pool));
  }

 private:
  // From this many rows on (snapshot chunks), COPY into a temporary table and one
  // INSERT ... SELECT from it: PostgreSQL takes rows through COPY several times
  // faster than as the parameters of multi-row INSERTs, which it must plan and check.
  static constexpr size_t kCopyRows = 100;

  Status CopyUpsert(const ReplicatedTable& table, std::span<const RowWrite* const> rows) {
    const std::string what = fmt::format("writing {}", table.name);
    const std::string staging = fmt::format("replication_{}", table.name);
    // Made once per connection; emptied by every COMMIT (and ROLLBACK).
    const std::string create =
        fmt::format("CREATE TEMPORARY TABLE IF NOT EXISTS {} (LIKE {}) ON COMMIT DELETE ROWS", staging, table.name);
    if (auto s = tx_.Run(what, create.c_str()); !s) return s;
    CopyData data;
    for (const RowWrite* row : rows) data.Row(row->values);
    const std::string copy = fmt::format("COPY {} ({}) FROM STDIN (FORMAT binary)", staging, table.columns);
    if (auto s = tx_.CopyIn(what, copy.c_str(), data.Finish()); !s) return s;
    if (auto s = tx_.Run(what, UpsertFromSql(table, staging).c_str()); !s) return s;
    // Empty again for another batch of this table in the same transaction.
    return tx_.Run(what, fmt::format("TRUNCATE {}", staging).c_str());
  }

  // Multi-row INSERTs: one round trip per statement is what bounds their speed.
  Status InsertUpsert(const ReplicatedTable& table, std::span<const RowWrite* const> rows) {
    size_t begin = 0;
    while (begin < rows.size()) {
      Params params;
      size_t end = begin;
      size_t bytes = 0;
      for (; end < rows.size() && (end == begin || ((end - begin + 1) * rows[end]->values.size() <= kMaxParams &&
                                                    bytes < kMaxBytes));
           ++end) {
        for (const SqlValue& value : rows[end]->values) {
          AddValue(params, value);
          if (const auto* blob = std::get_if<SqlBytes>(&value)) bytes += blob->bytes.size();
        }
      }
      std::string sql = UpsertSql(table, static_cast<int>(end - begin), PgPlaceholder);
      if (auto s = tx_.Run(fmt::format("writing {}", table.name), sql.c_str(), params); !s) return s;
      begin = end;
    }
    return OkStatus();
  }

  Tx& tx_;
};

}  // namespace

Result<ChangeLogHead> PostgresStore::ModuleHeadIn(Tx& tx, std::string_view module) {
  auto result = tx.Query("reading the change-log head",
                         "SELECT seq, at_ms FROM change_log WHERE module = $1 ORDER BY seq DESC LIMIT 1",
                         Params(module));
  if (!result) return std::unexpected(result.error());
  if (PQntuples(result->get()) == 0) return ChangeLogHead{};
  return ChangeLogHead{Int(result->get(), 0, 0), Int(result->get(), 0, 1)};
}

Result<std::vector<ChangeRecord>> PostgresStore::ReadModuleChanges(std::string_view module, int64_t after_seq,
                                                                   int limit) {
  return ReadChangesOf(module, after_seq, limit);
}

Result<ChangeLogHead> PostgresStore::ModuleHead(std::string_view module) {
  ChangeLogHead head;
  auto read = Transact("reading the change-log head", TxMode::kAutocommit, [&](Tx& tx) -> Status {
    auto found = ModuleHeadIn(tx, module);
    if (!found) return std::unexpected(found.error());
    head = *found;
    return OkStatus();
  });
  if (!read) return std::unexpected(read.error());
  return head;
}

// Applies run again after a COMMIT of unknown outcome: a batch applied already is
// skipped by seq, and snapshot chunks are upserts (a last chunk may come again).
InReplicationTx PostgresStore::ReplicationWriter(std::string_view what) {
  return [this, what](const std::function<Status(ReplicationTx&)>& body) {
    return Transact(what, TxMode::kWrite, [&](Tx& tx) -> Status {
      PgReplicationTx replication(tx);
      return body(replication);
    }, /*idempotent=*/true);
  };
}

Result<ImportProgress> PostgresStore::ApplyChanges(std::string_view source_pool, std::string_view module,
                                                   const std::vector<ChangeRecord>& batch) {
  return ApplyChangesWith(ReplicationWriter("applying changes"), source_pool, module, batch);
}

Result<int64_t> PostgresStore::ScanInOneRead(std::string_view module,
                                             const std::function<Status(const OpenCursor&, bool* delivered)>& scan) {
  int64_t head_seq = 0;
  auto read = Transact("scanning rows", TxMode::kRead, [&](Tx& tx) -> Status {
    auto head = ModuleHeadIn(tx, module);
    if (!head) return std::unexpected(head.error());
    head_seq = head->seq;
    auto open = [&](const ReplicatedTable& table, const SqlQuery& query) -> Result<std::unique_ptr<RowCursor>> {
      Params params;
      for (const SqlValue& value : query.params) AddValue(params, value);
      std::string declare = fmt::format("DECLARE scan_{} NO SCROLL CURSOR FOR {}", table.name, query.sql);
      if (auto s = tx.Run("scanning rows", declare.c_str(), params); !s) return std::unexpected(s.error());
      return std::make_unique<PgCursor>(tx, table.name, table.types);
    };
    bool delivered = false;
    auto scanned = scan(open, &delivered);
    // A retry would hand the sink the same rows again.
    if (!scanned && delivered) tx.ForbidRetry();
    return scanned;
  });
  if (!read) return std::unexpected(read.error());
  return head_seq;
}

Result<int64_t> PostgresStore::ScanRows(std::string_view module, std::string_view home_pool,
                                        std::string_view key_from, std::string_view key_to, int chunk_rows,
                                        const std::function<Status(std::vector<ReplicatedRow>&&)>& sink) {
  return ScanInOneRead(module, [&](const OpenCursor& open, bool* delivered) {
    return ScanTables(module, home_pool, key_from, key_to, chunk_rows, PgPlaceholder, open,
                      [&](std::vector<ReplicatedRow>&& rows) {
                        *delivered = true;
                        return sink(std::move(rows));
                      });
  });
}

Result<int64_t> PostgresStore::ScanSnapshot(std::string_view module, std::string_view home_pool, int chunk_rows,
                                            size_t chunk_bytes, const std::function<Status(SnapshotChunk&&)>& sink) {
  return ScanInOneRead(module, [&](const OpenCursor& open, bool* delivered) {
    return ScanSnapshotTables(module, home_pool, chunk_rows, chunk_bytes, PgPlaceholder, open,
                              [&](SnapshotChunk&& chunk) {
                                *delivered = true;
                                return sink(std::move(chunk));
                              });
  });
}

Result<ImportProgress> PostgresStore::ApplySnapshotChunk(std::string_view source_pool, std::string_view module,
                                                         std::string_view home_pool, int64_t snapshot_seq, bool first,
                                                         bool last, std::string_view chunk_json) {
  return ApplySnapshotChunkWith(ReplicationWriter("applying a snapshot"), source_pool, module, home_pool, snapshot_seq,
                                first, last, chunk_json);
}

Result<std::vector<ImportProgress>> PostgresStore::ListImportProgress() {
  std::vector<ImportProgress> list;
  const std::string sql = fmt::format("SELECT {} FROM import_progress ORDER BY source_pool, module", kImportColumns);
  auto read = Transact("listing import progress", TxMode::kAutocommit, [&](Tx& tx) -> Status {
    auto result = tx.Query("listing import progress", sql.c_str());
    if (!result) return std::unexpected(result.error());
    list.clear();
    for (int row = 0; row < PQntuples(result->get()); ++row) list.push_back(ReadImportRow(result->get(), row));
    return OkStatus();
  });
  if (!read) return std::unexpected(read.error());
  return list;
}

Status PostgresStore::RecordExportAck(std::string_view partner_pool, std::string_view module, int64_t acked_seq,
                                      int64_t now_ms) {
  if (auto tables = ReplicatedTables(module); !tables) return std::unexpected(tables.error());
  return Transact("recording an export ack", TxMode::kWrite, [&](Tx& tx) -> Status {
    if (auto s = tx.Run("recording an export ack",
                        "INSERT INTO export_progress(partner_pool, module, acked_seq, acked_at_ms) "
                        "VALUES ($1, $2, $3, $4) ON CONFLICT (partner_pool, module) DO UPDATE SET "
                        "acked_seq = EXCLUDED.acked_seq, acked_at_ms = EXCLUDED.acked_at_ms "
                        "WHERE EXCLUDED.acked_seq >= export_progress.acked_seq",
                        Params(partner_pool, module, acked_seq, now_ms));
        !s) {
      return s;
    }
    return tx.Run("pruning the change log",
                  "DELETE FROM change_log WHERE module = $1 AND seq <= "
                  "(SELECT acked_seq FROM export_progress WHERE partner_pool = $2 AND module = $1) "
                  "AND seq < (SELECT MAX(seq) FROM change_log WHERE module = $1)",
                  Params(module, partner_pool));
  }, /*idempotent=*/true);
}

Result<std::vector<ExportProgress>> PostgresStore::ListExportProgress() {
  std::vector<ExportProgress> list;
  auto read = Transact("listing export progress", TxMode::kAutocommit, [&](Tx& tx) -> Status {
    auto result = tx.Query("listing export progress",
                           "SELECT partner_pool, module, acked_seq, acked_at_ms FROM export_progress "
                           "ORDER BY partner_pool, module");
    if (!result) return std::unexpected(result.error());
    list.clear();
    const PGresult* r = result->get();
    for (int row = 0; row < PQntuples(r); ++row) {
      list.push_back(ExportProgress{Text(r, row, 0), Text(r, row, 1), Int(r, row, 2), Int(r, row, 3)});
    }
    return OkStatus();
  });
  if (!read) return std::unexpected(read.error());
  return list;
}

Result<NamedLease> PostgresStore::TryAcquireNamedLease(std::string_view name, std::string_view holder, int64_t now_ms,
                                                       int64_t expires_at_ms) {
  NamedLease lease;
  // One INSERT ... ON CONFLICT decides atomically; the SELECT reads whoever holds it.
  auto taken = Transact("taking a named lease", TxMode::kWrite, [&](Tx& tx) -> Status {
    if (auto s = tx.Run("taking a named lease",
                        "INSERT INTO named_leases(name, holder, expires_at_ms) VALUES ($1, $2, $4) "
                        "ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, "
                        "expires_at_ms = EXCLUDED.expires_at_ms "
                        "WHERE named_leases.expires_at_ms <= $3 OR named_leases.holder = EXCLUDED.holder",
                        Params(name, holder, now_ms, expires_at_ms));
        !s) {
      return s;
    }
    auto result = tx.Query("reading a named lease",
                           "SELECT name, holder, expires_at_ms FROM named_leases WHERE name = $1", Params(name));
    if (!result) return std::unexpected(result.error());
    TANDEM_CHECK(PQntuples(result->get()) == 1);
    lease = NamedLease{Text(result->get(), 0, 0), Text(result->get(), 0, 1), Int(result->get(), 0, 2)};
    return OkStatus();
  }, /*idempotent=*/true);
  if (!taken) return std::unexpected(taken.error());
  return lease;
}

Status PostgresStore::ReleaseNamedLease(std::string_view name, std::string_view holder) {
  return Transact("releasing a named lease", TxMode::kWrite, [&](Tx& tx) -> Status {
    return tx.Run("releasing a named lease", "DELETE FROM named_leases WHERE name = $1 AND holder = $2",
                  Params(name, holder));
  }, /*idempotent=*/true);
}

Status PostgresStore::SetSetting(std::string_view key, std::string_view value) {
  return Transact("writing a setting", TxMode::kWrite, [&](Tx& tx) -> Status {
    return tx.Run("writing a setting",
                  "INSERT INTO settings(key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                  Params(key, value));
  }, /*idempotent=*/true);
}

Result<std::optional<std::string>> PostgresStore::GetSetting(std::string_view key) {
  std::optional<std::string> value;
  auto read = Transact("reading a setting", TxMode::kAutocommit, [&](Tx& tx) -> Status {
    auto result = tx.Query("reading a setting", "SELECT value FROM settings WHERE key = $1", Params(key));
    if (!result) return std::unexpected(result.error());
    value.reset();
    if (PQntuples(result->get()) == 1) value = Text(result->get(), 0, 0);
    return OkStatus();
  });
  if (!read) return std::unexpected(read.error());
  return value;
}

// ---- Soft state ---------------------------------------------------------------------

Status PostgresStore::WriteSoftState(const std::vector<SoftStateWrite>& batch) {
  if (batch.empty()) return OkStatus();
  // Removals, then multi-row upserts: a batch holds each key once (the writer
  // coalesces), which ON CONFLICT requires of one statement.
  return Transact("writing soft state", TxMode::kWrite, [&](Tx& tx) -> Status {
    for (const SoftStateWrite& write : batch) {
      if (!write.remove) continue;
      if (auto s = tx.Run("writing soft state", "DELETE FROM soft_state WHERE pool = $1 AND kind = $2 AND key = $3",
                          Params(write.row.pool, write.row.kind, write.row.key));
          !s) {
        return s;
      }
    }
    constexpr size_t kRowsPerInsert = 500;
    std::vector<const SoftStateRow*> upserts;
    for (const SoftStateWrite& write : batch) {
      if (!write.remove) upserts.push_back(&write.row);
    }
    for (size_t begin = 0; begin < upserts.size(); begin += kRowsPerInsert) {
      size_t end = std::min(upserts.size(), begin + kRowsPerInsert);
      std::string sql = "INSERT INTO soft_state(pool, kind, key, routing_group, expires_at_ms, payload) VALUES ";
      Params params;
      for (size_t i = begin; i < end; ++i) {
        int first = static_cast<int>((i - begin) * 6) + 1;
        sql += fmt::format("{}(${}, ${}, ${}, ${}, ${}, ${})", i == begin ? "" : ", ", first, first + 1, first + 2,
                           first + 3, first + 4, first + 5);
        const SoftStateRow& row = *upserts[i];
        params.Add(row.pool);
        params.Add(row.kind);
        params.Add(row.key);
        params.Add(int64_t{row.routing_group});
        params.Add(row.expires_at_ms);
        params.Add(row.payload);
      }
      sql += " ON CONFLICT (pool, kind, key) DO UPDATE SET routing_group = EXCLUDED.routing_group, "
             "expires_at_ms = EXCLUDED.expires_at_ms, payload = EXCLUDED.payload";
      if (auto s = tx.Run("writing soft state", sql.c_str(), params); !s) return s;
    }
    return OkStatus();
  }, /*idempotent=*/true);
}

Result<std::vector<SoftStateRow>> PostgresStore::LoadSoftState(std::string_view pool, const std::vector<int>& groups,
                                                               int64_t now_ms) {
  std::vector<SoftStateRow> rows;
  if (groups.empty()) return rows;
  // Group numbers are ints from RoutingGroupOf, so they go into the SQL text directly.
  std::string sql = fmt::format(
      "SELECT pool, kind, key, routing_group, expires_at_ms, payload FROM soft_state "
      "WHERE pool = $1 AND expires_at_ms > $2 AND routing_group IN ({})",
      fmt::join(groups, ","));
  auto read = Transact("loading soft state", TxMode::kAutocommit, [&](Tx& tx) -> Status {
    auto result = tx.Query("loading soft state", sql.c_str(), Params(pool, now_ms));
    if (!result) return std::unexpected(result.error());
    rows.clear();
    for (int row = 0; row < PQntuples(result->get()); ++row) {
      rows.push_back(SoftStateRow{Text(result->get(), row, 0), Text(result->get(), row, 1),
                                  Text(result->get(), row, 2), static_cast<int>(Int(result->get(), row, 3)),
                                  Int(result->get(), row, 4), Text(result->get(), row, 5)});
    }
    return OkStatus();
  });
  if (!read) return std::unexpected(read.error());
  return rows;
}

Result<int64_t> PostgresStore::DeleteExpiredSoftState(std::string_view pool, int64_t now_ms) {
  int64_t removed = 0;
  auto done = Transact("deleting expired soft state", TxMode::kWrite, [&](Tx& tx) -> Status {
    auto result = tx.Query("deleting expired soft state",
                           "DELETE FROM soft_state WHERE pool = $1 AND expires_at_ms <= $2", Params(pool, now_ms));
    if (!result) return std::unexpected(result.error());
    removed = std::strtoll(PQcmdTuples(result->get()), nullptr, 10);
    return OkStatus();
  }, /*idempotent=*/true);
  if (!done) return std::unexpected(done.error());
  return removed;
}

}  // namespace tandem
