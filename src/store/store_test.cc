// The store test suite: every case of the Store contract runs against each back-end
// (SQLite and PostgreSQL), then come the cases only one back-end has (a SQLite path,
// PostgreSQL reconnection, failover and commit ordering).
//
// Where the PostgreSQL cases connect, in order of preference:
//   $TANDEM_TEST_PG_DSN        a server of yours (each test works in its own schema);
//   $TANDEM_TEST_PG_DSN_FILE   a file holding the DSN of a running cluster (CTest's
//                              fixture starts one for the suite, see CMakeLists.txt);
//   otherwise this binary starts a cluster with scripts/pg-cluster.sh on first use, in
//   a temporary directory, and stops it when the tests end.
// Without PostgreSQL installed the PostgreSQL cases are skipped, saying why.
#include <libpq-fe.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>
#include <tuple>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "store/migrations.h"
#include "store/postgres_store.h"
#include "store/sqlite_store.h"
#include "store/store_checks.h"

namespace tandem {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

std::string TempDir() {
  std::string dir = (std::filesystem::temp_directory_path() / "tandem-store-XXXXXX").string();
  TANDEM_CHECK(::mkdtemp(dir.data()) != nullptr);
  return dir;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string Trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

// Runs a shell command; its exit status (-1 if it did not exit normally).
int Shell(const std::string& command) {
  int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

const std::string kClusterScript = std::string(TANDEM_SOURCE_DIR) + "/scripts/pg-cluster.sh";
constexpr int kPostgresNotInstalled = 3;  // pg-cluster.sh's exit status

// Starts a cluster with pg-cluster.sh in `dir`. Empty on success, else why not
// (`*not_installed` tells a missing PostgreSQL from a failure).
std::string StartCluster(const std::string& dir, const std::string& flags, bool* not_installed) {
  int status = Shell(fmt::format("'{}' start '{}' {} >'{}/start.out' 2>&1", kClusterScript, dir, flags, dir));
  *not_installed = status == kPostgresNotInstalled;
  if (status == 0) return "";
  return fmt::format("scripts/pg-cluster.sh start failed ({}): {}", status, Trimmed(ReadFile(dir + "/start.out")));
}

void StopCluster(const std::string& dir) {
  Shell(fmt::format("'{}' stop '{}' >/dev/null 2>&1", kClusterScript, dir));
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
}

// The PostgreSQL server the suite uses; started on first use (see the top).
class PgServer {
 public:
  static PgServer& Get() {
    std::lock_guard lock(mu_);
    if (!instance_) instance_ = new PgServer();
    return *instance_;
  }
  // Stops the cluster this binary started, if it did (at the end of the tests).
  static void StopIfStarted() {
    std::lock_guard lock(mu_);
    if (instance_ && !instance_->own_dir_.empty()) StopCluster(instance_->own_dir_);
    delete instance_;
    instance_ = nullptr;
  }

  const std::string& dsn() const { return dsn_; }
  // Why there is no server: skip_ when PostgreSQL is not installed, a failure otherwise.
  const std::string& skip_reason() const { return skip_; }
  const std::string& failure() const { return failure_; }

 private:
  PgServer() {
    if (const char* dsn = std::getenv("TANDEM_TEST_PG_DSN"); dsn && *dsn) {
      dsn_ = dsn;
      return;
    }
    if (const char* file = std::getenv("TANDEM_TEST_PG_DSN_FILE"); file && *file) {
      dsn_ = Trimmed(ReadFile(file));
      if (!dsn_.empty()) return;
      // The fixture found no PostgreSQL (or failed): trying here says which.
    }
    own_dir_ = TempDir();
    bool not_installed = false;
    std::string error = StartCluster(own_dir_, "", &not_installed);
    if (error.empty()) {
      dsn_ = Trimmed(ReadFile(own_dir_ + "/dsn"));
      return;
    }
    if (not_installed) {
      skip_ = "PostgreSQL is not installed (no server binaries in /usr/lib/postgresql/15/bin): the PostgreSQL "
              "store cases are skipped. Install the postgresql package or set TANDEM_TEST_PG_DSN.";
    } else {
      failure_ = error;
    }
    StopCluster(own_dir_);
    own_dir_.clear();
  }

  static inline std::mutex mu_;
  static inline PgServer* instance_ = nullptr;
  std::string dsn_;
  std::string own_dir_;
  std::string skip_;
  std::string failure_;
};

class PgServerEnvironment : public ::testing::Environment {
 public:
  void TearDown() override { PgServer::StopIfStarted(); }
};
[[maybe_unused]] const auto* const kPgEnvironment = ::testing::AddGlobalTestEnvironment(new PgServerEnvironment);

// A libpq connection for the tests' own SQL (faults, inspection); aborts on failure.
class PgConnection {
 public:
  explicit PgConnection(const std::string& dsn) : conn_(PQconnectdb(dsn.c_str())) {
    if (PQstatus(conn_) != CONNECTION_OK) std::fprintf(stderr, "test connection: %s\n", PQerrorMessage(conn_));
    TANDEM_CHECK(PQstatus(conn_) == CONNECTION_OK);
    PQsetNoticeReceiver(conn_, [](void*, const PGresult*) {}, nullptr);
  }
  ~PgConnection() { PQfinish(conn_); }
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  // Runs `sql`; returns the first column of the first row ("" if none).
  std::string Exec(const std::string& sql) {
    PGresult* result = PQexec(conn_, sql.c_str());
    ExecStatusType status = PQresultStatus(result);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      std::fprintf(stderr, "test SQL failed: %s: %s\n", sql.c_str(), PQresultErrorMessage(result));
    }
    TANDEM_CHECK(status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK);
    std::string value = PQntuples(result) > 0 && PQnfields(result) > 0 ? PQgetvalue(result, 0, 0) : "";
    PQclear(result);
    return value;
  }

 private:
  PGconn* conn_;
};

// `dsn` with `extra` keywords added (or replacing the same keywords), as a
// keyword=value string whatever form `dsn` had.
std::string DsnWith(const std::string& dsn, const std::vector<std::pair<std::string, std::string>>& extra) {
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(dsn.c_str(), &error);
  TANDEM_CHECK(options != nullptr);
  auto quoted = [](const std::string& value) {
    std::string out = "'";
    for (char c : value) {
      if (c == '\'' || c == '\\') out += '\\';
      out += c;
    }
    return out + "'";
  };
  std::string out;
  for (const PQconninfoOption* option = options; option->keyword; ++option) {
    if (!option->val) continue;
    bool replaced = std::any_of(extra.begin(), extra.end(), [&](const auto& kv) { return kv.first == option->keyword; });
    if (!replaced) out += fmt::format("{}={} ", option->keyword, quoted(option->val));
  }
  PQconninfoFree(options);
  for (const auto& [keyword, value] : extra) out += fmt::format("{}={} ", keyword, quoted(value));
  return Trimmed(out);
}

// ---- Back-ends ----------------------------------------------------------------------

enum class Backend { kSqlite, kPostgres };

std::string_view BackendName(Backend backend) { return backend == Backend::kSqlite ? "Sqlite" : "Postgres"; }
std::string BackendTestName(const ::testing::TestParamInfo<Backend>& info) {
  return std::string(BackendName(info.param));
}
// How gtest (and so CTest's test names) prints the parameter.
void PrintTo(Backend backend, std::ostream* out) { *out << BackendName(backend); }

// One fresh, empty place for a store: a SQLite file, or a PostgreSQL schema of its own.
class StoreLocation {
 public:
  virtual ~StoreLocation() = default;
  // Opens (and migrates) the store there: each call is a new connection, as another
  // server of the pool would have.
  virtual Result<std::unique_ptr<Store>> Open() = 0;
  virtual int NewestSchemaVersion() const = 0;
  // Runs SQL on a connection of its own; returns the first column of the first row.
  virtual std::string Exec(const std::string& sql) = 0;
  // Makes every change-log append fail (and undoes it), as a full disk or a bug would.
  virtual void InjectChangeLogFailure() = 0;
  virtual void ClearChangeLogFailure() = 0;
};

class SqliteLocation final : public StoreLocation {
 public:
  ~SqliteLocation() override {
    std::error_code ignored;
    std::filesystem::remove_all(std::filesystem::path(path_).parent_path(), ignored);
  }
  Result<std::unique_ptr<Store>> Open() override { return OpenSqliteStore(path_); }
  int NewestSchemaVersion() const override { return SqliteMigrations().back().version; }
  std::string Exec(const std::string& sql) override {
    sqlite3* db = nullptr;
    TANDEM_CHECK(sqlite3_open(path_.c_str(), &db) == SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    std::string first;
    char* message = nullptr;
    int rc = sqlite3_exec(
        db, sql.c_str(),
        [](void* out, int columns, char** values, char**) {
          auto* first = static_cast<std::string*>(out);
          if (first->empty() && columns > 0 && values[0]) *first = values[0];
          return 0;
        },
        &first, &message);
    if (rc != SQLITE_OK) std::fprintf(stderr, "%s\n", message ? message : "?");
    sqlite3_free(message);
    sqlite3_close(db);
    TANDEM_CHECK(rc == SQLITE_OK);
    return first;
  }
  void InjectChangeLogFailure() override {
    Exec("CREATE TRIGGER injected_failure BEFORE INSERT ON change_log "
         "BEGIN SELECT RAISE(ABORT, 'injected change-log failure'); END");
  }
  void ClearChangeLogFailure() override { Exec("DROP TRIGGER injected_failure"); }

 private:
  std::string path_ = TempDir() + "/pool.db";
};

class PostgresLocation final : public StoreLocation {
 public:
  PostgresLocation(const std::string& server_dsn, PostgresStoreOptions options = {})
      : server_dsn_(server_dsn), options_(std::move(options)) {
    static std::atomic<int> counter = 0;
    schema_ = fmt::format("tandem_test_{}_{}", ::getpid(), counter++);
    PgConnection(server_dsn_).Exec(fmt::format("DROP SCHEMA IF EXISTS {0} CASCADE; CREATE SCHEMA {0}", schema_));
    // Its own schema first on the search path; the application name finds its sessions.
    dsn_ = DsnWith(server_dsn_, {{"options", "-c search_path=" + schema_}, {"application_name", schema_}});
  }
  ~PostgresLocation() override { PgConnection(server_dsn_).Exec(fmt::format("DROP SCHEMA {} CASCADE", schema_)); }

  Result<std::unique_ptr<Store>> Open() override { return OpenPostgresStore(dsn_, options_); }
  Result<std::unique_ptr<Store>> Open(const PostgresStoreOptions& options) { return OpenPostgresStore(dsn_, options); }
  int NewestSchemaVersion() const override { return PostgresMigrations().back().version; }
  std::string Exec(const std::string& sql) override { return PgConnection(dsn_).Exec(sql); }
  void InjectChangeLogFailure() override {
    Exec("CREATE FUNCTION injected_failure() RETURNS trigger LANGUAGE plpgsql AS "
         "$$ BEGIN RAISE EXCEPTION 'injected change-log failure'; END $$;"
         "CREATE TRIGGER injected_failure BEFORE INSERT ON change_log "
         "FOR EACH ROW EXECUTE FUNCTION injected_failure()");
  }
  void ClearChangeLogFailure() override {
    Exec("DROP TRIGGER injected_failure ON change_log; DROP FUNCTION injected_failure()");
  }

  const std::string& dsn() const { return dsn_; }
  const std::string& schema() const { return schema_; }
  // Terminates the server sessions of this location's stores (not the caller's) and
  // waits until they are gone, as a server restart or a network cut would.
  int TerminateStoreSessions() {
    return std::stoi(Exec(fmt::format(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 10000)) FROM pg_stat_activity "
        "WHERE application_name = '{}' AND pid <> pg_backend_pid()",
        schema_)));
  }

 private:
  std::string server_dsn_;
  PostgresStoreOptions options_;
  std::string schema_;
  std::string dsn_;
};

// The PostgreSQL server, or a skip (not installed) / failure (could not start).
#define REQUIRE_PG_SERVER()                                                   \
  do {                                                                        \
    const PgServer& server = PgServer::Get();                                 \
    if (!server.skip_reason().empty()) GTEST_SKIP() << server.skip_reason();  \
    if (!server.failure().empty()) GTEST_FAIL() << server.failure();          \
  } while (0)

// The fixture of the cases every back-end runs.
class StoreTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == Backend::kPostgres) {
      REQUIRE_PG_SERVER();
      location_ = std::make_unique<PostgresLocation>(PgServer::Get().dsn());
    } else {
      location_ = std::make_unique<SqliteLocation>();
    }
  }

  // Opens the store at this test's location (another connection on each call).
  std::unique_ptr<Store> OpenStore() {
    auto store = location_->Open();
    if (!store) ADD_FAILURE() << "opening the store: " << store.error().message;
    return store ? std::move(*store) : nullptr;
  }

  std::unique_ptr<StoreLocation> location_;
};

INSTANTIATE_TEST_SUITE_P(Backends, StoreTest, ::testing::Values(Backend::kSqlite, Backend::kPostgres), BackendTestName);

UserRecord User(const std::string& name) {
  return UserRecord{"sip:" + name + "@example.com", name, "example.com", "pool1.example.com", "m", "s", "mf", "sf", 42};
}

TEST_P(StoreTest, MigratesToNewestVersionAndIsIdempotent) {
  {
    auto store = OpenStore();
    ASSERT_TRUE(store);
    auto version = store->SchemaVersion();
    ASSERT_TRUE(version);
    EXPECT_EQ(*version, location_->NewestSchemaVersion());
  }
  auto reopened = OpenStore();  // migrations already applied: nothing to do
  ASSERT_TRUE(reopened);
  EXPECT_EQ(*reopened->SchemaVersion(), location_->NewestSchemaVersion());
  EXPECT_EQ(location_->Exec("SELECT COUNT(*) FROM schema_version"), std::to_string(location_->NewestSchemaVersion()));
}

TEST_P(StoreTest, ConcurrentProcessesMigrateOnce) {
  std::vector<pid_t> children;
  for (int i = 0; i < 4; ++i) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      auto store = location_->Open();
      if (!store) std::fprintf(stderr, "child %d: %s\n", i, store.error().message.c_str());
      ::_exit(store ? 0 : 1);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  auto store = OpenStore();
  ASSERT_TRUE(store);
  EXPECT_EQ(*store->SchemaVersion(), location_->NewestSchemaVersion());
  // Each migration ran exactly once.
  EXPECT_EQ(location_->Exec("SELECT COUNT(*) FROM schema_version"), std::to_string(location_->NewestSchemaVersion()));
}

TEST_P(StoreTest, CmsVersionsAppendInOrder) {
  auto store = OpenStore();
  ASSERT_TRUE(store);
  auto empty = store->LatestCmsVersion();
  ASSERT_TRUE(empty);
  EXPECT_FALSE(empty->has_value());

  ASSERT_TRUE(store->AppendCmsVersion({1, 1000, "{\"v\":1}"}, 0));
  ASSERT_TRUE(store->AppendCmsVersion({2, 2000, "{\"v\":2}"}, 1));
  auto latest = store->LatestCmsVersion();
  ASSERT_TRUE(latest && latest->has_value());
  EXPECT_EQ((*latest)->version, 2);
  EXPECT_EQ((*latest)->published_at_ms, 2000);
  EXPECT_EQ((*latest)->document, "{\"v\":2}");
}

TEST_P(StoreTest, RemoveCmsVersionsTakesOnlyTheExactDocumentsAndTheirChangeRecords) {
  auto store = OpenStore();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->AppendCmsVersion({1, 1000, "one"}, 0));
  ASSERT_TRUE(store->AppendCmsVersion({2, 2000, "two"}, 1));
  ASSERT_TRUE(store->AppendCmsVersion({3, 3000, "three"}, 2));
  // Version 3 is named with another document (the new master's): it stays.
  ASSERT_TRUE(store->RemoveCmsVersions({{2, 2000, "two"}, {3, 3000, "other"}}));
  auto latest = store->LatestCmsVersion();
  ASSERT_TRUE(latest && latest->has_value());
  EXPECT_EQ((*latest)->document, "three");
  auto changes = store->ReadModuleChanges("cms", 0, 100);
  ASSERT_TRUE(changes);
  std::vector<std::string> keys;
  for (const ChangeRecord& change : *changes) keys.push_back(change.key);
  EXPECT_EQ(keys, (std::vector<std::string>{CmsVersionChangeKey(1), CmsVersionChangeKey(3)}));
  // Version 2 can be written again (the new master's version 2 applied later).
  ASSERT_TRUE(store->ApplyChanges("pool2.example.com", "cms",
                                  {{7, 4000, "cms", "", CmsVersionChangeKey(2), "upsert",
                                    CmsVersionPayloadJson({2, 4000, "two-new"})}}));
  int rows = 0;
  std::string second;
  ASSERT_TRUE(store->ScanRows("cms", "", "", "", 10, [&](std::vector<ReplicatedRow>&& chunk) -> Status {
    for (const ReplicatedRow& row : chunk) {
      ++rows;
      if (row.key == CmsVersionChangeKey(2)) second = row.payload;
    }
    return OkStatus();
  }));
  EXPECT_EQ(rows, 3);
  EXPECT_EQ(second, CmsVersionPayloadJson({2, 4000, "two-new"}));
}

TEST_P(StoreTest, ConcurrentPublishIsDetected) {
  auto store = OpenStore();
  auto other_server = OpenStore();
  ASSERT_TRUE(store && other_server);
  ASSERT_TRUE(store->AppendCmsVersion({1, 1000, "a"}, 0));
  // A second writer that still believes version 0 is newest must not overwrite.
  auto stale = other_server->AppendCmsVersion({1, 1001, "b"}, 0);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, ErrorCode::kAlreadyExists);
  EXPECT_EQ((*store->LatestCmsVersion())->document, "a");
}

TEST_P(StoreTest, LeasesAreRenewedListedPerPoolAndReleasedWithoutChangeLog) {
  auto store = OpenStore();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->RenewLease({"fe1", "pool1.example.com", 1000, 4000}));
  ASSERT_TRUE(store->RenewLease({"fe2", "pool1.example.com", 1000, 4000}));
  ASSERT_TRUE(store->RenewLease({"fe9", "pool2.example.com", 1000, 4000}));
  ASSERT_TRUE(store->RenewLease({"fe1", "pool1.example.com", 2000, 5000}));
  auto leases = store->ListLeases("pool1.example.com");
  ASSERT_TRUE(leases) << leases.error().message;
  ASSERT_EQ(leases->size(), 2u);
  EXPECT_EQ((*leases)[0].server_id, "fe1");
  EXPECT_EQ((*leases)[0].expires_at_ms, 5000);
  EXPECT_EQ((*leases)[1].server_id, "fe2");
  ASSERT_TRUE(store->ReleaseLease("fe2"));
  EXPECT_EQ(store->ListLeases("pool1.example.com")->size(), 1u);
  EXPECT_TRUE(store->ReadChanges(0, 100)->empty()) << "leases are soft state, never shipped";
}

TEST_P(StoreTest, SoftStateIsWrittenInBatchesLoadedByGroupAndExpiredWithoutChangeLog) {
  auto store = OpenStore();
  ASSERT_TRUE(store);
  const std::string pool = "pool1.example.com";
  auto row = [&](std::string kind, std::string key, int group, int64_t expires, std::string payload) {
    return SoftStateRow{pool, std::move(kind), std::move(key), group, expires, std::move(payload)};
  };
  ASSERT_TRUE(store->WriteSoftState({{row("registration", "sip:alice@example.com", 7, 9000, "a1")},
                                     {row("registration", "sip:bob@example.com", 8, 9000, "b1")},
                                     {row("subscription", "call-1 tag-1", 7, 2000, "s1")},
                                     {SoftStateRow{"pool2.example.com", "registration", "sip:carol@example.com", 7,
                                                   9000, "c1"}}}));
  // An upsert replaces the payload; a removal drops the row.
  ASSERT_TRUE(store->WriteSoftState({{row("registration", "sip:alice@example.com", 7, 9500, "a2")},
                                     {row("registration", "sip:bob@example.com", 8, 0, ""), /*remove=*/true}}));
  auto loaded = store->LoadSoftState(pool, {7, 8}, 1000);
  ASSERT_TRUE(loaded) << loaded.error().message;
  std::map<std::string, SoftStateRow> by_key;
  for (const SoftStateRow& r : *loaded) by_key[r.key] = r;
  ASSERT_EQ(by_key.size(), 2u);
  EXPECT_EQ(by_key["sip:alice@example.com"].payload, "a2");
  EXPECT_EQ(by_key["sip:alice@example.com"].expires_at_ms, 9500);
  EXPECT_EQ(by_key["call-1 tag-1"].kind, "subscription");
  EXPECT_EQ(by_key["call-1 tag-1"].routing_group, 7);
  EXPECT_TRUE(store->LoadSoftState(pool, {9}, 1000)->empty()) << "only the groups asked for";
  EXPECT_EQ(store->LoadSoftState(pool, {7}, 2000)->size(), 1u) << "expired rows are not loaded";
  auto removed = store->DeleteExpiredSoftState(pool, 2000);
  ASSERT_TRUE(removed);
  EXPECT_EQ(*removed, 1);
  EXPECT_EQ(store->LoadSoftState("pool2.example.com", {7}, 0)->size(), 1u) << "another pool's rows stay";
  EXPECT_TRUE(store->ReadChanges(0, 100)->empty()) << "soft state is never shipped";
}

TEST_P(StoreTest, EveryUserMutationAppendsOneChangeInOrder) {
  auto store = OpenStore();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->AddUsers({User("alice"), User("bob")}));
  ASSERT_TRUE(store->RemoveUser("sip:alice@example.com"));
  auto changes = store->ReadChanges(0, 100);
  ASSERT_TRUE(changes);
  ASSERT_EQ(changes->size(), 3u);
  EXPECT_EQ((*changes)[0].key, "sip:alice@example.com");
  EXPECT_EQ((*changes)[0].op, "upsert");
  EXPECT_EQ((*changes)[0].module, "user");
  EXPECT_EQ((*changes)[0].home_pool, "pool1.example.com");
  EXPECT_EQ((*changes)[0].at_ms, 42);
  EXPECT_EQ(json::parse((*changes)[0].payload)["ha1_sha256_full"], "sf");
  EXPECT_EQ((*changes)[1].key, "sip:bob@example.com");
  EXPECT_EQ((*changes)[2].op, "delete");
  EXPECT_LT((*changes)[0].seq, (*changes)[1].seq);
  EXPECT_LT((*changes)[1].seq, (*changes)[2].seq);
  auto after = store->ReadChanges((*changes)[1].seq, 100);
  ASSERT_TRUE(after);
  ASSERT_EQ(after->size(), 1u);
  EXPECT_EQ((*after)[0].op, "delete");
  EXPECT_EQ(store->ReadChanges(0, 2)->size(), 2u);

  auto bob = store->FindUser("bob", "example.com");
  ASSERT_TRUE(bob && bob->has_value());
  EXPECT_EQ((*bob)->ha1_sha256_full, "sf");
  EXPECT_EQ((*bob)->created_at_ms, 42);
  EXPECT_FALSE((*store->FindUser("alice", "example.com")).has_value());
}

TEST_P(StoreTest, FailedWriteLeavesNeitherRowsNorChanges) {
  auto store = OpenStore();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->AddUsers({User("bob")}));
  // carol is new but bob exists: the whole batch is refused, carol included.
  auto added = store->AddUsers({User("carol"), User("bob")});
  ASSERT_FALSE(added);
  EXPECT_EQ(added.error().code, ErrorCode::kAlreadyExists);
  EXPECT_NE(added.error().message.find("sip:bob@example.com"), std::string::npos);
  EXPECT_EQ(store->ListUsers()->size(), 1u);
  EXPECT_EQ(store->ReadChanges(0, 100)->size(), 1u);

  auto removed = store->RemoveUser("sip:nobody@example.com");
  ASSERT_FALSE(removed);
  EXPECT_EQ(removed.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(store->ReadChanges(0, 100)->size(), 1u);
}

// What the Backup Service relies on: a reader that tails the change log (reads after
// the last seq it saw) while several servers write never skips a record, because no
// record commits after a record with a higher seq became visible.
TEST_P(StoreTest, TailingReaderNeverMissesAChangeOfConcurrentWriters) {
  auto shared = OpenStore();  // two threads share this one (its connection pool)
  auto second = OpenStore();
  auto third = OpenStore();
  ASSERT_TRUE(shared && second && third);
  ASSERT_TRUE(shared->AddUsers({User("alice")}));
  constexpr int kWriters = 4;
  constexpr int kWritesEach = 25;
  Store* stores[kWriters] = {shared.get(), shared.get(), second.get(), third.get()};

  std::atomic<int> writers_left = kWriters;
  std::vector<int64_t> tailed;
  std::thread reader([&] {
    int64_t last = 0;
    for (;;) {
      bool writers_done = writers_left.load() == 0;
      auto batch = shared->ReadChanges(last, 1000);
      ASSERT_TRUE(batch) << batch.error().message;
      for (const ChangeRecord& change : *batch) tailed.push_back(change.seq);
      if (!batch->empty()) last = batch->back().seq;
      if (writers_done && batch->empty()) return;
    }
  });
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < kWritesEach; ++i) {
        auto added = stores[w]->AddContactGroup("sip:alice@example.com", fmt::format("group {} {}", w, i));
        EXPECT_TRUE(added) << added.error().message;
      }
      --writers_left;
    });
  }
  for (std::thread& writer : writers) writer.join();
  reader.join();

  auto all = shared->ReadChanges(0, 100000);
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 1u + kWriters * kWritesEach);
  std::vector<int64_t> seqs;
  for (const ChangeRecord& change : *all) seqs.push_back(change.seq);
  EXPECT_TRUE(std::is_sorted(seqs.begin(), seqs.end()));
  EXPECT_EQ(std::adjacent_find(seqs.begin(), seqs.end()), seqs.end()) << "seq is strictly increasing";
  EXPECT_EQ(tailed, seqs) << "the tailing reader missed or repeated a change";
}

// ---- User data and conference data -------------------------------------------------

constexpr const char* kAlice = "sip:alice@example.com";
constexpr const char* kBob = "sip:bob@example.com";

// A fresh store with alice and bob provisioned in pool1.
class DataStoreTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    store_ = OpenStore();
    ASSERT_TRUE(store_);
    ASSERT_TRUE(store_->AddUsers({User("alice"), User("bob")}));
  }

  int64_t LastSeq() {
    auto changes = store_->ReadChanges(0, 1000000);
    TANDEM_CHECK(changes.has_value());
    return changes->empty() ? 0 : changes->back().seq;
  }
  size_t ChangeCount() { return store_->ReadChanges(0, 1000000)->size(); }
  // Checks that exactly one record was appended since `before_seq` and returns it.
  ChangeRecord OnlyChangeSince(int64_t before_seq) {
    auto changes = store_->ReadChanges(before_seq, 100);
    TANDEM_CHECK(changes.has_value());
    EXPECT_EQ(changes->size(), 1u);
    return changes->empty() ? ChangeRecord{} : changes->front();
  }

  std::unique_ptr<Store> store_;
};

using UserDataStoreTest = DataStoreTest;
using ConferenceStoreTest = DataStoreTest;
INSTANTIATE_TEST_SUITE_P(Backends, UserDataStoreTest, ::testing::Values(Backend::kSqlite, Backend::kPostgres),
                         BackendTestName);
INSTANTIATE_TEST_SUITE_P(Backends, ConferenceStoreTest, ::testing::Values(Backend::kSqlite, Backend::kPostgres),
                         BackendTestName);

MeetingRecord Meeting(const std::string& id, const std::string& organizer = kAlice) {
  MeetingRecord meeting;
  meeting.id = id;
  meeting.organizer = organizer;
  meeting.subject = "Quarterly review";
  meeting.start_ms = 1'800'000'000'000;
  meeting.end_ms = 1'800'003'600'000;
  meeting.attendees = {kBob, "sip:carol@example.com"};
  meeting.pin = "123456";
  return meeting;
}

TEST_P(UserDataStoreTest, EveryMutationAppendsExactlyOneChangeWithIncreasingSeq) {
  int64_t seq = LastSeq();
  auto expect_one = [&](std::string_view op, const std::string& key) {
    ChangeRecord change = OnlyChangeSince(seq);
    EXPECT_GT(change.seq, seq);
    EXPECT_EQ(change.module, "user");
    EXPECT_EQ(change.home_pool, "pool1.example.com");
    EXPECT_EQ(change.key, key);
    EXPECT_EQ(change.op, op);
    seq = change.seq;
    return change;
  };

  ASSERT_TRUE(store_->AddContactGroup(kAlice, "Friends"));
  json group = json::parse(expect_one("upsert", "sip:alice@example.com#group:Friends").payload);
  EXPECT_EQ(group["name"], "Friends");

  ASSERT_TRUE(store_->UpsertContact({kAlice, kBob, "Bob B.", {"Friends", "Friends"}}));
  json contact = json::parse(expect_one("upsert", "sip:alice@example.com#contact:sip:bob@example.com").payload);
  EXPECT_EQ(contact["display_name"], "Bob B.");
  EXPECT_EQ(contact["groups"], json::array({"Friends"}));  // duplicates dropped
  EXPECT_EQ(contact["owner"], kAlice);

  ASSERT_TRUE(store_->UpsertContact({kAlice, kBob, "Bobby", {}}));  // replace: still one record
  EXPECT_EQ(json::parse(expect_one("upsert", ContactChangeKey(kAlice, kBob)).payload)["display_name"], "Bobby");

  ASSERT_TRUE(store_->SetPresenceNote(kAlice, "In meetings all day"));
  EXPECT_EQ(json::parse(expect_one("upsert", "sip:alice@example.com#note").payload)["note"], "In meetings all day");

  auto privacy = store_->UpdatePrivacy(kAlice, {.policy = PrivacyPolicy::kAllowListed, .allow = {{kBob}}});
  ASSERT_TRUE(privacy);
  json privacy_payload = json::parse(expect_one("upsert", "sip:alice@example.com#privacy").payload);
  EXPECT_EQ(privacy_payload["policy"], "allow-listed");
  EXPECT_EQ(privacy_payload["allow"], json::array({kBob}));
  EXPECT_EQ(privacy_payload["block"], json::array());

  ASSERT_TRUE(store_->RemoveContact(kAlice, kBob));
  EXPECT_EQ(expect_one("delete", ContactChangeKey(kAlice, kBob)).payload, "");
  ASSERT_TRUE(store_->RemoveContactGroup(kAlice, "Friends"));
  expect_one("delete", ContactGroupChangeKey(kAlice, "Friends"));
}

TEST_P(UserDataStoreTest, ReadsReturnWhatWasWritten) {
  ASSERT_TRUE(store_->AddContactGroup(kAlice, "Work"));
  ASSERT_TRUE(store_->AddContactGroup(kAlice, "Friends"));
  ASSERT_TRUE(store_->UpsertContact({kAlice, "sip:carol@example.com", "Carol", {"Work"}}));
  ASSERT_TRUE(store_->UpsertContact({kAlice, kBob, "", {"Work", "Friends"}}));

  auto contacts = store_->ListContacts(kAlice);
  ASSERT_TRUE(contacts);
  ASSERT_EQ(contacts->size(), 2u);
  EXPECT_EQ((*contacts)[0].contact, kBob);  // sorted by URI
  EXPECT_EQ((*contacts)[0].groups, (std::vector<std::string>{"Work", "Friends"}));
  EXPECT_EQ((*contacts)[0].home_pool, "pool1.example.com");
  EXPECT_EQ((*contacts)[1].display_name, "Carol");
  EXPECT_TRUE(store_->ListContacts(kBob)->empty());

  auto groups = store_->ListContactGroups(kAlice);
  ASSERT_TRUE(groups);
  ASSERT_EQ(groups->size(), 2u);
  EXPECT_EQ((*groups)[0].name, "Friends");

  auto note = store_->GetPresenceNote(kAlice);
  ASSERT_TRUE(note);
  EXPECT_EQ(note->note, "");
  EXPECT_EQ(note->updated_at_ms, 0);
  ASSERT_TRUE(store_->SetPresenceNote(kAlice, "Out until Monday ☀"));
  EXPECT_EQ(store_->GetPresenceNote(kAlice)->note, "Out until Monday ☀");

  auto defaults = store_->GetPrivacy(kAlice);
  ASSERT_TRUE(defaults);
  EXPECT_EQ(defaults->policy, PrivacyPolicy::kAllowContacts);
  EXPECT_TRUE(defaults->allow.empty());
  EXPECT_EQ(defaults->home_pool, "pool1.example.com");
  ASSERT_TRUE(store_->UpdatePrivacy(kAlice, {.block = {{"spam.example.net"}}}));
  ASSERT_TRUE(store_->UpdatePrivacy(kAlice, {.policy = PrivacyPolicy::kAllowAll}));
  auto privacy = store_->GetPrivacy(kAlice);
  ASSERT_TRUE(privacy);
  EXPECT_EQ(privacy->policy, PrivacyPolicy::kAllowAll);  // absent fields kept
  EXPECT_EQ(privacy->block, std::vector<std::string>{"spam.example.net"});
}

// Byte order, not a locale's: 'B' < 'a' < 'b', and "Zed" before "alpha".
TEST_P(UserDataStoreTest, ListsSortBytewise) {
  for (const char* name : {"alpha", "Zed", "beta", "Beta"}) ASSERT_TRUE(store_->AddContactGroup(kAlice, name));
  auto groups = store_->ListContactGroups(kAlice);
  ASSERT_TRUE(groups);
  std::vector<std::string> names;
  for (const ContactGroupRecord& group : *groups) names.push_back(group.name);
  EXPECT_EQ(names, (std::vector<std::string>{"Beta", "Zed", "alpha", "beta"}));
}

TEST_P(UserDataStoreTest, RefusalsLeaveNeitherRowNorChange) {
  ASSERT_TRUE(store_->AddContactGroup(kAlice, "Friends"));
  size_t changes = ChangeCount();
  auto expect_refused = [&](const auto& status, ErrorCode code) {
    ASSERT_FALSE(status);
    EXPECT_EQ(status.error().code, code) << status.error().message;
    EXPECT_EQ(ChangeCount(), changes);
  };
  const std::string kNobody = "sip:nobody@example.com";
  expect_refused(store_->UpsertContact({kNobody, kBob, "", {}}), ErrorCode::kNotFound);
  expect_refused(store_->RemoveContact(kAlice, kBob), ErrorCode::kNotFound);
  expect_refused(store_->RemoveContact(kNobody, kBob), ErrorCode::kNotFound);
  expect_refused(store_->UpsertContact({kAlice, kBob, "", {"Friends", "Nope"}}), ErrorCode::kFailedPrecondition);
  expect_refused(store_->UpsertContact({kAlice, kAlice, "", {}}), ErrorCode::kInvalidArgument);
  expect_refused(store_->UpsertContact({kAlice, kBob, "bad \xff utf-8", {}}), ErrorCode::kInvalidArgument);
  expect_refused(store_->AddContactGroup(kAlice, "Friends"), ErrorCode::kAlreadyExists);
  expect_refused(store_->AddContactGroup(kNobody, "Friends"), ErrorCode::kNotFound);
  expect_refused(store_->RemoveContactGroup(kAlice, "Nope"), ErrorCode::kNotFound);
  expect_refused(store_->SetPresenceNote(kNobody, "hi"), ErrorCode::kNotFound);
  expect_refused(store_->UpdatePrivacy(kNobody, {}), ErrorCode::kNotFound);
  EXPECT_TRUE(store_->ListContacts(kAlice)->empty());
  EXPECT_EQ(store_->ListContacts(kNobody).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(store_->ListContactGroups(kNobody).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(store_->GetPresenceNote(kNobody).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(store_->GetPrivacy(kNobody).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(store_->GetPresencePolicy(kNobody).error().code, ErrorCode::kNotFound);

  // A group still in use cannot go; the contact has to leave it first.
  ASSERT_TRUE(store_->UpsertContact({kAlice, kBob, "", {"Friends"}}));
  changes = ChangeCount();
  expect_refused(store_->RemoveContactGroup(kAlice, "Friends"), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(store_->ListContactGroups(kAlice)->size(), 1u);
}

TEST_P(UserDataStoreTest, InjectedChangeLogFailureRollsBackTheRow) {
  location_->InjectChangeLogFailure();
  size_t changes = ChangeCount();
  auto added = store_->AddContactGroup(kAlice, "Friends");
  ASSERT_FALSE(added);
  EXPECT_NE(added.error().message.find("injected"), std::string::npos) << added.error().message;
  EXPECT_FALSE(store_->UpsertContact({kAlice, kBob, "Bob", {}}));
  EXPECT_FALSE(store_->SetPresenceNote(kAlice, "note"));
  EXPECT_FALSE(store_->UpdatePrivacy(kAlice, {.policy = PrivacyPolicy::kAllowAll}));
  EXPECT_FALSE(store_->CreateMeeting(Meeting("00112233445566aa")));
  EXPECT_FALSE(store_->AddUsers({User("carol")}));
  EXPECT_FALSE(store_->RemoveUser(kBob));

  EXPECT_EQ(ChangeCount(), changes);
  EXPECT_TRUE(store_->ListContactGroups(kAlice)->empty());
  EXPECT_TRUE(store_->ListContacts(kAlice)->empty());
  EXPECT_EQ(store_->GetPresenceNote(kAlice)->updated_at_ms, 0);
  EXPECT_EQ(store_->GetPrivacy(kAlice)->policy, PrivacyPolicy::kAllowContacts);
  EXPECT_FALSE(store_->GetMeeting("00112233445566aa")->has_value());
  EXPECT_EQ(store_->ListUsers()->size(), 2u);

  location_->ClearChangeLogFailure();
  EXPECT_TRUE(store_->AddContactGroup(kAlice, "Friends"));
  EXPECT_EQ(ChangeCount(), changes + 1);
}

TEST_P(UserDataStoreTest, PresencePolicyDecidesWhoSeesPresence) {
  ASSERT_TRUE(store_->UpsertContact({kAlice, kBob, "", {}}));
  auto policy = store_->GetPresencePolicy(kAlice);
  ASSERT_TRUE(policy);
  EXPECT_EQ(policy->contacts, std::vector<std::string>{kBob});
  EXPECT_EQ(policy->privacy.home_pool, "pool1.example.com");
  EXPECT_TRUE(policy->Allows(kAlice));  // always sees herself
  EXPECT_TRUE(policy->Allows(kBob));    // a contact, default policy
  EXPECT_FALSE(policy->Allows("sip:carol@example.com"));

  ASSERT_TRUE(store_->UpdatePrivacy(kAlice, {.allow = {{"sip:carol@example.com"}}, .block = {{"example.com"}}}));
  policy = store_->GetPresencePolicy(kAlice);
  ASSERT_TRUE(policy);
  EXPECT_FALSE(policy->Allows(kBob)) << "a blocked domain wins over the contact list";
  EXPECT_FALSE(policy->Allows("sip:carol@example.com")) << "and over the allow list";
  EXPECT_TRUE(policy->Blocks(kBob));
  EXPECT_FALSE(policy->Blocks(kAlice)) << "owners are never blocked from themselves";
  EXPECT_FALSE(policy->Blocks("sip:dave@other.example.org"));
  EXPECT_TRUE(policy->Allows(kAlice));

  ASSERT_TRUE(store_->UpdatePrivacy(kAlice, {.policy = PrivacyPolicy::kAllowListed, .block = {{}}}));
  policy = store_->GetPresencePolicy(kAlice);
  EXPECT_FALSE(policy->Allows(kBob)) << "allow-listed ignores the contact list";
  EXPECT_TRUE(policy->Allows("sip:carol@example.com"));

  ASSERT_TRUE(store_->UpdatePrivacy(kAlice, {.policy = PrivacyPolicy::kAllowAll, .block = {{kBob}}}));
  policy = store_->GetPresencePolicy(kAlice);
  EXPECT_TRUE(policy->Allows("sip:dave@other.example.org"));
  EXPECT_FALSE(policy->Allows(kBob));
}

TEST_P(ConferenceStoreTest, MeetingLifecycleAppendsOneChangeEach) {
  int64_t seq = LastSeq();
  auto created = store_->CreateMeeting(Meeting("0123456789abcdef"));
  ASSERT_TRUE(created) << created.error().message;
  EXPECT_EQ(created->home_pool, "pool1.example.com");
  EXPECT_EQ(created->state, MeetingState::kScheduled);
  EXPECT_GT(created->created_ms, 0);
  ChangeRecord change = OnlyChangeSince(seq);
  EXPECT_EQ(change.module, "conference");
  EXPECT_EQ(change.key, "meeting:0123456789abcdef");
  EXPECT_EQ(change.op, "upsert");
  json payload = json::parse(change.payload);
  EXPECT_EQ(payload["pin"], "123456");
  EXPECT_EQ(payload["lobby"], "attendees-only");
  EXPECT_EQ(payload["attendees"].size(), 2u);
  seq = change.seq;

  auto updated = store_->UpdateMeeting("0123456789abcdef", {.subject = "Q3 review", .lobby = LobbyPolicy::kOpen});
  ASSERT_TRUE(updated);
  EXPECT_EQ(updated->subject, "Q3 review");
  EXPECT_EQ(updated->pin, "123456");  // kept
  change = OnlyChangeSince(seq);
  EXPECT_EQ(json::parse(change.payload)["subject"], "Q3 review");
  EXPECT_EQ(json::parse(change.payload)["lobby"], "open");
  seq = change.seq;

  auto cancelled = store_->CancelMeeting("0123456789abcdef");
  ASSERT_TRUE(cancelled);
  EXPECT_EQ(cancelled->state, MeetingState::kCancelled);
  change = OnlyChangeSince(seq);
  EXPECT_EQ(change.op, "upsert");
  EXPECT_EQ(json::parse(change.payload)["state"], "cancelled");

  auto stored = store_->GetMeeting("0123456789abcdef");
  ASSERT_TRUE(stored && stored->has_value());
  EXPECT_EQ((*stored)->state, MeetingState::kCancelled);
  EXPECT_EQ((*stored)->subject, "Q3 review");
  EXPECT_EQ((*stored)->lobby, LobbyPolicy::kOpen);
  EXPECT_EQ((*stored)->start_ms, Meeting("x").start_ms);
  EXPECT_EQ((*stored)->created_ms, created->created_ms);
  EXPECT_EQ((*stored)->attendees, (std::vector<std::string>{kBob, "sip:carol@example.com"}));
}

TEST_P(ConferenceStoreTest, MeetingRefusalsLeaveNeitherRowNorChange) {
  ASSERT_TRUE(store_->CreateMeeting(Meeting("0123456789abcdef")));
  size_t changes = ChangeCount();
  auto expect_refused = [&](const auto& result, ErrorCode code) {
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, code) << result.error().message;
    EXPECT_EQ(ChangeCount(), changes);
  };
  expect_refused(store_->CreateMeeting(Meeting("0123456789abcdef")), ErrorCode::kAlreadyExists);
  expect_refused(store_->CreateMeeting(Meeting("1123456789abcdef", "sip:nobody@example.com")), ErrorCode::kNotFound);
  expect_refused(store_->CreateMeeting(Meeting("0123456789ABCDEF")), ErrorCode::kInvalidArgument);
  MeetingRecord bad_pin = Meeting("2123456789abcdef");
  bad_pin.pin = "12a4";
  expect_refused(store_->CreateMeeting(bad_pin), ErrorCode::kInvalidArgument);
  MeetingRecord backwards = Meeting("3123456789abcdef");
  backwards.end_ms = backwards.start_ms;
  expect_refused(store_->CreateMeeting(backwards), ErrorCode::kInvalidArgument);
  // The merged result is checked: moving the end before the start is refused.
  expect_refused(store_->UpdateMeeting("0123456789abcdef", {.end_ms = 1}), ErrorCode::kInvalidArgument);
  expect_refused(store_->UpdateMeeting("ffffffffffffffff", {.subject = "x"}), ErrorCode::kNotFound);
  expect_refused(store_->CancelMeeting("ffffffffffffffff"), ErrorCode::kNotFound);
  EXPECT_EQ((*store_->GetMeeting("0123456789abcdef"))->end_ms, Meeting("x").end_ms);
  EXPECT_FALSE(store_->GetMeeting("ffffffffffffffff")->has_value());

  ASSERT_TRUE(store_->CancelMeeting("0123456789abcdef"));
  changes = ChangeCount();
  expect_refused(store_->CancelMeeting("0123456789abcdef"), ErrorCode::kFailedPrecondition);
  expect_refused(store_->UpdateMeeting("0123456789abcdef", {.subject = "x"}), ErrorCode::kFailedPrecondition);
  expect_refused(store_->PutContent({"0123456789abcdef", "a.txt", 0, std::string(64, 'a')}, "x"),
                 ErrorCode::kFailedPrecondition);
}

TEST_P(ConferenceStoreTest, ListsMeetingsByOrganizerAndPool) {
  MeetingRecord later = Meeting("00000000000000bb");
  later.start_ms += 1000;
  later.end_ms += 1000;
  ASSERT_TRUE(store_->CreateMeeting(later));
  ASSERT_TRUE(store_->CreateMeeting(Meeting("00000000000000aa")));
  ASSERT_TRUE(store_->CreateMeeting(Meeting("00000000000000cc", kBob)));
  auto all = store_->ListMeetings({});
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].id, "00000000000000aa");  // by start time, then id
  EXPECT_EQ((*all)[1].id, "00000000000000cc");
  EXPECT_EQ((*all)[2].id, "00000000000000bb");
  EXPECT_EQ(store_->ListMeetings({.organizer = kAlice})->size(), 2u);
  EXPECT_EQ(store_->ListMeetings({.organizer = kBob, .home_pool = "pool1.example.com"})->size(), 1u);
  EXPECT_TRUE(store_->ListMeetings({.home_pool = "pool2.example.com"})->empty());
}

TEST_P(ConferenceStoreTest, ContentIsStoredAndLoggedWithHashAndBase64) {
  ASSERT_TRUE(store_->CreateMeeting(Meeting("0123456789abcdef")));
  std::string bytes("slides\0\xff\x01", 9);
  std::string sha(64, 'c');
  int64_t seq = LastSeq();
  auto put = store_->PutContent({"0123456789abcdef", "deck v1.pdf", 0, sha}, bytes);
  ASSERT_TRUE(put) << put.error().message;
  EXPECT_EQ(put->size, 9);
  EXPECT_EQ(put->home_pool, "pool1.example.com");
  ChangeRecord change = OnlyChangeSince(seq);
  EXPECT_EQ(change.module, "conference");
  EXPECT_EQ(change.key, "content:0123456789abcdef/deck v1.pdf");
  json payload = json::parse(change.payload);
  EXPECT_EQ(payload["sha256"], sha);
  EXPECT_EQ(payload["size"], 9);
  EXPECT_EQ(payload["content_base64"], "c2xpZGVzAP8B");

  auto got = store_->GetContent("0123456789abcdef", "deck v1.pdf");
  ASSERT_TRUE(got && got->has_value());
  EXPECT_EQ((*got)->bytes, bytes);
  EXPECT_EQ((*got)->info.sha256, sha);
  EXPECT_EQ((*got)->info.size, 9);
  EXPECT_EQ((*got)->info.uploaded_ms, put->uploaded_ms);
  EXPECT_FALSE(store_->GetContent("0123456789abcdef", "other.pdf")->has_value());

  ASSERT_TRUE(store_->PutContent({"0123456789abcdef", "empty.txt", 0, sha}, ""));
  EXPECT_EQ(json::parse(store_->ReadChanges(LastSeq() - 1, 1)->front().payload)["content_base64"], "");
  auto listed = store_->ListContent("0123456789abcdef");
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[1].name, "empty.txt");
  EXPECT_EQ((*listed)[1].size, 0);
  EXPECT_EQ((*store_->GetContent("0123456789abcdef", "empty.txt"))->bytes, "");

  // Replacing a file keeps one row.
  std::string big(300'000, 'x');
  ASSERT_TRUE(store_->PutContent({"0123456789abcdef", "empty.txt", 0, sha}, big));
  EXPECT_EQ((*store_->GetContent("0123456789abcdef", "empty.txt"))->bytes, big);
  EXPECT_EQ(store_->ListContent("0123456789abcdef")->size(), 2u);

  size_t changes = ChangeCount();
  EXPECT_EQ(store_->PutContent({"ffffffffffffffff", "a", 0, sha}, "x").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(store_->PutContent({"0123456789abcdef", "../a", 0, sha}, "x").error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(store_->PutContent({"0123456789abcdef", "a", 0, "xyz"}, "x").error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(store_->ListContent("ffffffffffffffff").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(ChangeCount(), changes);
}

// ---- Replication -------------------------------------------------------------------

using Rows = std::vector<std::tuple<std::string, std::string, std::string>>;  // key, home pool, payload

// DataStoreTest's store as pool1's, with data in every module, and an empty store of
// the same back-end as its partner (pool2's).
class ReplicationStoreTest : public DataStoreTest {
 protected:
  void SetUp() override {
    DataStoreTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    if (GetParam() == Backend::kPostgres) {
      partner_location_ = std::make_unique<PostgresLocation>(PgServer::Get().dsn());
    } else {
      partner_location_ = std::make_unique<SqliteLocation>();
    }
    auto partner = partner_location_->Open();
    ASSERT_TRUE(partner) << partner.error().message;
    partner_ = std::move(*partner);
  }

  // User data, a meeting with binary content, CMS versions; carol is homed in pool2.
  void Fill() {
    UserRecord carol = User("carol");
    carol.home_pool = "pool2.example.com";
    ASSERT_TRUE(store_->AddUsers({carol}));
    ASSERT_TRUE(store_->AddContactGroup(kAlice, "Work"));
    ASSERT_TRUE(store_->AddContactGroup(kAlice, "Friends"));
    ASSERT_TRUE(store_->UpsertContact({kAlice, kBob, "Bob \"B\" ☀", {"Work", "Friends"}}));
    ASSERT_TRUE(store_->UpsertContact({kAlice, "sip:carol@example.com", "", {}}));
    ASSERT_TRUE(store_->UpsertContact({kBob, kAlice, "Alice", {}}));
    ASSERT_TRUE(store_->UpsertContact({"sip:carol@example.com", kAlice, "", {}}));
    ASSERT_TRUE(store_->SetPresenceNote(kAlice, "In meetings\nall day"));
    ASSERT_TRUE(store_->UpdatePrivacy(kBob, {.policy = PrivacyPolicy::kAllowListed, .allow = {{kAlice}},
                                            .block = {{"spam.example.com"}}}));
    ASSERT_TRUE(store_->CreateMeeting(Meeting("0123456789abcdef")));
    ASSERT_TRUE(store_->CreateMeeting(Meeting("00000000000000bb", kBob)));
    ASSERT_TRUE(store_->CancelMeeting("00000000000000bb"));
    ASSERT_TRUE(store_->PutContent({"0123456789abcdef", "deck.pdf", 0, std::string(64, 'a')},
                                   std::string("\0\xff\x01slides", 9)));
    ASSERT_TRUE(store_->PutContent({"0123456789abcdef", "empty.txt", 0, std::string(64, 'b')}, ""));
    ASSERT_TRUE(store_->AppendCmsVersion({1, 1000, "{\"v\":1}"}, 0));
    ASSERT_TRUE(store_->AppendCmsVersion({2, 2000, "{\"v\":2,\"s\":\"\xc3\xa9\"}"}, 1));
  }

  static Rows Scan(Store& store, const std::string& module, const std::string& pool = "pool1.example.com",
                   const std::string& from = "", const std::string& to = "", int chunk_rows = 1000) {
    Rows rows;
    auto head = store.ScanRows(module, pool, from, to, chunk_rows, [&](std::vector<ReplicatedRow>&& chunk) {
      EXPECT_LE(chunk.size(), static_cast<size_t>(chunk_rows));
      for (ReplicatedRow& row : chunk) rows.emplace_back(row.key, row.home_pool, row.payload);
      return OkStatus();
    });
    EXPECT_TRUE(head) << head.error().message;
    return rows;
  }

  // Ships `module` of pool1 as a snapshot in chunks of `chunk_rows` (or of about
  // `chunk_bytes` of text).
  void ShipSnapshot(const std::string& module, int chunk_rows, size_t chunk_bytes = 1 << 20) {
    std::vector<SnapshotChunk> chunks;
    int64_t rows = 0;
    auto head = store_->ScanSnapshot(module, "pool1.example.com", chunk_rows, chunk_bytes, [&](SnapshotChunk&& chunk) {
      EXPECT_LE(chunk.rows, chunk_rows);
      EXPECT_GT(chunk.rows, 0);
      rows += chunk.rows;
      chunks.push_back(std::move(chunk));
      return OkStatus();
    });
    ASSERT_TRUE(head) << head.error().message;
    EXPECT_EQ(rows, static_cast<int64_t>(Scan(*store_, module).size())) << "every row ScanRows gives";
    if (chunks.empty()) chunks.push_back({"[]", 0});
    // As the Backup Service sends them: chunks sent during the scan carry an older
    // head (a lower bound), the last one the scan's own.
    const int64_t early_seq = std::max<int64_t>(*head - 1, 1);
    for (size_t i = 0; i < chunks.size(); ++i) {
      bool last = i + 1 == chunks.size();
      auto progress = partner_->ApplySnapshotChunk("pool1.example.com", module, "pool1.example.com",
                                                   last ? *head : early_seq, i == 0, last, chunks[i].json);
      ASSERT_TRUE(progress) << progress.error().message;
      EXPECT_EQ(progress->snapshot_seq, last ? 0 : early_seq);
      if (i + 1 == chunks.size()) {
        EXPECT_EQ(progress->applied_seq, *head);
      }
    }
  }

  RowsDigest Digest(Store& store, const std::string& module, const std::string& from = "",
                    const std::string& to = "") {
    auto digest = DigestRows(store, module, "pool1.example.com", from, to);
    EXPECT_TRUE(digest) << digest.error().message;
    return digest ? *digest : RowsDigest{};
  }

  std::unique_ptr<StoreLocation> partner_location_;
  std::unique_ptr<Store> partner_;
};

INSTANTIATE_TEST_SUITE_P(Backends, ReplicationStoreTest, ::testing::Values(Backend::kSqlite, Backend::kPostgres),
                         BackendTestName);

TEST_P(ReplicationStoreTest, CmsVersionAppendsACmsRecord) {
  CmsVersionRecord record{1, 1234, "{\"topology\":\"x\"}"};
  ASSERT_TRUE(store_->AppendCmsVersion(record, 0));
  auto changes = store_->ReadModuleChanges("cms", 0, 100);
  ASSERT_TRUE(changes) << changes.error().message;
  ASSERT_EQ(changes->size(), 1u);
  const ChangeRecord& change = changes->front();
  EXPECT_EQ(change.key, "version:000000000001");
  EXPECT_EQ(change.key, CmsVersionChangeKey(1));
  EXPECT_EQ(change.home_pool, "");
  EXPECT_EQ(change.op, "upsert");
  EXPECT_EQ(change.at_ms, 1234);
  EXPECT_EQ(change.payload, CmsVersionPayloadJson(record));
  EXPECT_EQ(json::parse(change.payload)["document"], record.document);
  // A refused publish logs nothing.
  EXPECT_FALSE(store_->AppendCmsVersion({1, 1, "stale"}, 0));
  EXPECT_EQ(store_->ReadModuleChanges("cms", 0, 100)->size(), 1u);
}

TEST_P(ReplicationStoreTest, ReadModuleChangesFiltersByModuleSeqAndLimit) {
  ASSERT_NO_FATAL_FAILURE(Fill());
  auto all = store_->ReadChanges(0, 1000);
  ASSERT_TRUE(all);
  for (std::string module : {"user", "conference", "cms"}) {
    std::vector<int64_t> expected;
    for (const ChangeRecord& change : *all) {
      if (change.module == module) expected.push_back(change.seq);
    }
    ASSERT_GE(expected.size(), 2u) << module;
    auto changes = store_->ReadModuleChanges(module, 0, 1000);
    ASSERT_TRUE(changes);
    std::vector<int64_t> seqs;
    for (const ChangeRecord& change : *changes) seqs.push_back(change.seq);
    EXPECT_EQ(seqs, expected) << module;
    auto after = store_->ReadModuleChanges(module, expected[0], 1);
    ASSERT_EQ(after->size(), 1u);
    EXPECT_EQ(after->front().seq, expected[1]);
    auto head = store_->ModuleHead(module);
    ASSERT_TRUE(head);
    EXPECT_EQ(head->seq, expected.back());
    EXPECT_EQ(head->at_ms, changes->back().at_ms);
  }
  EXPECT_TRUE(store_->ReadModuleChanges("nothing", 0, 1000)->empty());
  EXPECT_EQ(store_->ModuleHead("nothing")->seq, 0);
}

TEST_P(ReplicationStoreTest, ExportAckNeverMovesBackAndPrunesAllButTheNewestRecord) {
  ASSERT_NO_FATAL_FAILURE(Fill());
  ChangeLogHead user_head = *store_->ModuleHead("user");
  size_t conference_records = store_->ReadModuleChanges("conference", 0, 1000)->size();
  auto user_records = *store_->ReadModuleChanges("user", 0, 1000);
  int64_t first_user_seq = user_records[0].seq;

  ASSERT_TRUE(store_->RecordExportAck("pool2.example.com", "user", first_user_seq, 500));
  EXPECT_EQ(store_->ReadModuleChanges("user", 0, 1000)->front().seq, user_records[1].seq) << "first one pruned";

  ASSERT_TRUE(store_->RecordExportAck("pool2.example.com", "user", user_head.seq, 1000));
  auto left = store_->ReadModuleChanges("user", 0, 1000);
  ASSERT_EQ(left->size(), 1u) << "the newest record stays";
  EXPECT_EQ(left->front().seq, user_head.seq);
  auto head = store_->ModuleHead("user");
  EXPECT_EQ(head->seq, user_head.seq);
  EXPECT_EQ(head->at_ms, user_head.at_ms);
  EXPECT_EQ(store_->ReadModuleChanges("conference", 0, 1000)->size(), conference_records) << "other modules kept";

  // An older ack (a late duplicate) changes nothing.
  ASSERT_TRUE(store_->RecordExportAck("pool2.example.com", "user", first_user_seq, 2000));
  ASSERT_TRUE(store_->RecordExportAck("pool2.example.com", "cms", 0, 3000));
  auto progress = store_->ListExportProgress();
  ASSERT_TRUE(progress);
  ASSERT_EQ(progress->size(), 2u);
  EXPECT_EQ((*progress)[0].module, "cms");
  EXPECT_EQ((*progress)[1].partner_pool, "pool2.example.com");
  EXPECT_EQ((*progress)[1].module, "user");
  EXPECT_EQ((*progress)[1].acked_seq, user_head.seq);
  EXPECT_EQ((*progress)[1].acked_at_ms, 1000);
  EXPECT_EQ(store_->RecordExportAck("pool2.example.com", "bogus", 1, 1).error().code, ErrorCode::kInvalidArgument);

  // A new record after a prune gets a higher seq than the kept one.
  ASSERT_TRUE(store_->SetPresenceNote(kBob, "back"));
  EXPECT_GT(store_->ModuleHead("user")->seq, user_head.seq);
}

TEST_P(ReplicationStoreTest, ApplyChangesIsIdempotentDoesNotEchoAndReproducesTheRows) {
  ASSERT_NO_FATAL_FAILURE(Fill());
  ASSERT_TRUE(store_->RemoveContact(kAlice, "sip:carol@example.com"));
  ASSERT_TRUE(store_->RemoveUser("sip:carol@example.com"));
  for (std::string module : {"user", "conference", "cms"}) {
    auto batch = store_->ReadModuleChanges(module, 0, 1000);
    ASSERT_TRUE(batch);
    // Two batches, so progress carries over from one to the next.
    std::vector<ChangeRecord> first(batch->begin(), batch->begin() + 2), rest(batch->begin() + 2, batch->end());
    ASSERT_TRUE(partner_->ApplyChanges("pool1.example.com", module, first));
    auto applied = partner_->ApplyChanges("pool1.example.com", module, *batch);  // overlaps: resent
    ASSERT_TRUE(applied) << module << ": " << applied.error().message;
    EXPECT_EQ(applied->source_pool, "pool1.example.com");
    EXPECT_EQ(applied->module, module);
    EXPECT_EQ(applied->applied_seq, batch->back().seq);
    EXPECT_EQ(applied->source_at_ms, batch->back().at_ms);
    EXPECT_GT(applied->applied_at_ms, 0);

    auto again = partner_->ApplyChanges("pool1.example.com", module, rest);
    ASSERT_TRUE(again);
    EXPECT_EQ(again->applied_seq, applied->applied_seq);
    EXPECT_EQ(again->applied_at_ms, applied->applied_at_ms) << "a resent batch changes nothing";
    EXPECT_EQ(Scan(*partner_, module), Scan(*store_, module)) << module;
  }
  EXPECT_TRUE(partner_->ReadChanges(0, 1000)->empty()) << "applied records are not logged again";
  auto progress = partner_->ListImportProgress();
  ASSERT_TRUE(progress);
  ASSERT_EQ(progress->size(), 3u);
  EXPECT_EQ((*progress)[0].module, "cms");

  // The partner can authenticate pool1's users and serve their data.
  auto bob = partner_->FindUser("bob", "example.com");
  ASSERT_TRUE(bob && bob->has_value());
  EXPECT_EQ((*bob)->ha1_md5, "m");
  EXPECT_EQ((*bob)->ha1_sha256_full, "sf");
  EXPECT_FALSE(partner_->FindUser("carol", "example.com")->has_value()) << "the removal was applied";
  auto contacts = partner_->ListContacts(kAlice);
  ASSERT_TRUE(contacts);
  ASSERT_EQ(contacts->size(), 1u);
  EXPECT_EQ(contacts->front().groups, (std::vector<std::string>{"Work", "Friends"}));
  auto content = partner_->GetContent("0123456789abcdef", "deck.pdf");
  ASSERT_TRUE(content && content->has_value());
  EXPECT_EQ((*content)->bytes, std::string("\0\xff\x01slides", 9));
  EXPECT_EQ((*partner_->LatestCmsVersion())->version, 2);
}

TEST_P(ReplicationStoreTest, ConcurrentlyResentBatchIsAppliedOnce) {
  ASSERT_NO_FATAL_FAILURE(Fill());
  auto batch = *store_->ReadModuleChanges("user", 0, 1000);
  auto other = partner_location_->Open();
  ASSERT_TRUE(other);
  std::vector<Result<ImportProgress>> results(2, ImportProgress{});
  std::thread a([&] { results[0] = partner_->ApplyChanges("pool1.example.com", "user", batch); });
  std::thread b([&] { results[1] = (*other)->ApplyChanges("pool1.example.com", "user", batch); });
  a.join();
  b.join();
  for (const auto& result : results) {
    ASSERT_TRUE(result) << result.error().message;
    EXPECT_EQ(result->applied_seq, batch.back().seq);
  }
  EXPECT_EQ(results[0]->applied_at_ms, results[1]->applied_at_ms) << "the second saw the first's progress";
  EXPECT_EQ(Scan(*partner_, "user"), Scan(*store_, "user"));
}

TEST_P(ReplicationStoreTest, InvalidRecordAppliesNothing) {
  ASSERT_NO_FATAL_FAILURE(Fill());
  auto good = *store_->ReadModuleChanges("user", 0, 1000);
  // After every good record of the user module, so one bad record spoils the batch.
  auto refused = [&](ChangeRecord bad, std::string_view module = "user") {
    std::vector<ChangeRecord> batch = module == "user" ? good : std::vector<ChangeRecord>{};
    bad.seq = good.back().seq + 1;
    batch.push_back(bad);
    auto applied = partner_->ApplyChanges("pool1.example.com", module, batch);
    EXPECT_FALSE(applied) << bad.key;
    if (!applied) {
      EXPECT_EQ(applied.error().code, ErrorCode::kInvalidArgument) << applied.error().message;
    }
  };
  refused({0, 1, "conference", "pool1.example.com", "meeting:0123456789abcdef", "delete", ""});  // other module
  refused({0, 1, "user", "pool1.example.com", "sip:x@example.com#bogus", "delete", ""});        // unknown kind
  refused({0, 1, "user", "pool1.example.com", "sip:x@example.com", "upsert", "{not json"});
  refused({0, 1, "user", "pool1.example.com", "sip:x@example.com", "upsert", "{\"uri\":\"sip:x@example.com\"}"});
  refused({0, 1, "user", "pool1.example.com", "sip:other@example.com", "upsert", good[0].payload});  // key mismatch
  refused({0, 1, "user", "pool1.example.com", "sip:x@example.com", "rename", ""});
  refused({0, 1, "cms", "", "version:000000000001", "delete", ""}, "cms");
  refused({0, 1, "conference", "", "content:0123456789abcdef/a", "upsert",
           json{{"meeting_id", "0123456789abcdef"}, {"name", "a"}, {"size", 1}, {"sha256", std::string(64, 'a')},
                {"home_pool", "pool1.example.com"}, {"uploaded_ms", 1}, {"content_base64", "!!!!"}}
               .dump()},
          "conference");
  std::vector<ChangeRecord> backwards = {good[1], good[0]};
  EXPECT_EQ(partner_->ApplyChanges("pool1.example.com", "user", backwards).error().code, ErrorCode::kInvalidArgument);

  EXPECT_TRUE(partner_->ListUsers()->empty());
  auto progress = partner_->ListImportProgress();
  ASSERT_TRUE(progress);
  for (const ImportProgress& p : *progress) EXPECT_EQ(p.applied_seq, 0);
}

TEST_P(ReplicationStoreTest, SnapshotRoundTripGivesIdenticalRowsAndDigests) {
  ASSERT_NO_FATAL_FAILURE(Fill());
  // The partner holds its own user, and stale rows of pool1 that the snapshot replaces.
  UserRecord dave = User("dave");
  dave.home_pool = "pool2.example.com";
  ASSERT_TRUE(partner_->AddUsers({dave}));
  ASSERT_TRUE(partner_->ApplyChanges("pool1.example.com", "user", *store_->ReadModuleChanges("user", 0, 3)));
  UserRecord stale = User("stale");
  ASSERT_TRUE(partner_->ApplyChanges("pool1.example.com", "user",
                                     {{1000000, 1, "user", "pool1.example.com", stale.uri, "upsert",
                                       UserPayloadJson(stale)}}));

  for (std::string module : {"user", "conference", "cms"}) {
    ASSERT_NO_FATAL_FAILURE(ShipSnapshot(module, 3));
    Rows source = Scan(*store_, module);
    EXPECT_EQ(Scan(*partner_, module), source) << module;
    EXPECT_EQ(Scan(*partner_, module, "pool1.example.com", "", "", 1), source) << "chunking changes nothing";
    RowsDigest digest = Digest(*store_, module);
    EXPECT_EQ(digest.rows, static_cast<int64_t>(source.size()));
    EXPECT_EQ(digest.sha256.size(), 64u);
    EXPECT_EQ(Digest(*partner_, module).sha256, digest.sha256) << module;
  }
  EXPECT_FALSE(partner_->FindUser("stale", "example.com")->has_value()) << "the first chunk cleared pool1's rows";
  EXPECT_TRUE(partner_->FindUser("dave", "example.com")->has_value()) << "other pools' rows stay";
  EXPECT_EQ(Scan(*store_, "user", "pool2.example.com").size(), 2u) << "carol and her contact";
  EXPECT_TRUE(partner_->ReadModuleChanges("user", 0, 1000)->size() == 1u) << "only dave's own record";
  auto progress = partner_->ListImportProgress();
  ASSERT_TRUE(progress);
  for (const ImportProgress& p : *progress) {
    EXPECT_EQ(p.snapshot_seq, 0);
    EXPECT_EQ(p.applied_seq, store_->ModuleHead(p.module)->seq) << p.module;
  }
  // Applying the changes since the snapshot continues from its seq.
  ASSERT_TRUE(store_->SetPresenceNote(kAlice, "later"));
  auto since = store_->ReadModuleChanges("user", store_->ModuleHead("user")->seq - 1, 100);
  ASSERT_TRUE(partner_->ApplyChanges("pool1.example.com", "user", *since));
  EXPECT_EQ(Digest(*partner_, "user").sha256, Digest(*store_, "user").sha256);

  // Chunks must belong to a started snapshot, and rows to the pool.
  EXPECT_EQ(partner_->ApplySnapshotChunk("pool1.example.com", "user", "pool1.example.com", 99, false, true, "[]")
                .error()
                .code,
            ErrorCode::kFailedPrecondition);
  const std::string carol_row =
      R"(["users","sip:carol@example.com","carol","example.com","pool2.example.com","m","s","mf","sf",1])";
  EXPECT_EQ(partner_->ApplySnapshotChunk("pool1.example.com", "user", "pool1.example.com", 5, true, true,
                                         "[" + carol_row + "]")
                .error()
                .code,
            ErrorCode::kInvalidArgument);
}

TEST_P(ReplicationStoreTest, SnapshotChunksAreBoundedByBytesToo) {
  ASSERT_NO_FATAL_FAILURE(Fill());
  int chunks = 0;
  ASSERT_TRUE(store_->ScanSnapshot("user", "pool1.example.com", 1000, 1, [&](SnapshotChunk&& chunk) {
    EXPECT_EQ(chunk.rows, 1) << "a row larger than the bound goes alone";
    ++chunks;
    return OkStatus();
  }));
  EXPECT_EQ(chunks, static_cast<int>(Scan(*store_, "user").size()));
  ASSERT_NO_FATAL_FAILURE(ShipSnapshot("conference", 1000, 200));
  EXPECT_EQ(Digest(*partner_, "conference").sha256, Digest(*store_, "conference").sha256);
}

TEST_P(ReplicationStoreTest, SnapshotOfManyRowsRoundTripsAndStopsAtAFailingSink) {
  ASSERT_NO_FATAL_FAILURE(Fill());
  // More rows of one table than one INSERT takes, and not a multiple of it.
  for (int i = 0; i < 101; ++i) {
    ASSERT_TRUE(store_->UpsertContact({kBob, fmt::format("sip:c{:03d}@example.com", i), fmt::format("C \"{}\"", i), {}}));
  }
  for (int round = 0; round < 2; ++round) {  // the second one replaces what the first applied
    ASSERT_NO_FATAL_FAILURE(ShipSnapshot("user", 1000));
    EXPECT_EQ(Scan(*partner_, "user"), Scan(*store_, "user"));
    EXPECT_EQ(Digest(*partner_, "user").sha256, Digest(*store_, "user").sha256);
  }
  int calls = 0;
  auto scanned = store_->ScanSnapshot("user", "pool1.example.com", 10, 1 << 20, [&](SnapshotChunk&&) -> Status {
    ++calls;
    return MakeError(ErrorCode::kUnavailable, "partner gone");
  });
  ASSERT_FALSE(scanned);
  EXPECT_EQ(scanned.error().message, "partner gone");
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(store_->ScanSnapshot("bogus", "", 10, 1 << 20, [](auto&&) { return OkStatus(); }).error().code,
            ErrorCode::kInvalidArgument);
}

TEST_P(ReplicationStoreTest, MalformedSnapshotChunkAppliesNothing) {
  ASSERT_NO_FATAL_FAILURE(Fill());
  const std::string user = R"(["users","sip:x@example.com","x","example.com","pool1.example.com","m","s","mf","sf",1])";
  const std::string contact = R"(["contacts","sip:x@example.com","sip:y@example.com","","[]","pool1.example.com",2])";
  auto refused = [&](std::string_view module, const std::string& chunk) {
    auto applied = partner_->ApplySnapshotChunk("pool1.example.com", module, "pool1.example.com", 5, true, true, chunk);
    EXPECT_FALSE(applied) << chunk;
    if (!applied) {
      EXPECT_EQ(applied.error().code, ErrorCode::kInvalidArgument) << applied.error().message;
    }
  };
  for (const std::string& chunk : std::vector<std::string>{
           std::string("[") + user,                                      // not JSON
           std::string("{}"),                                            // not an array
           std::string("\"users\""),                                     // not an array
           "[" + user + "] trailing",                                    // more than the array
           "[" + user + ",[]]",                                          // an empty row
           "[[1," + user.substr(1) + "]",                                // no table first
           R"([["meetings","0123456789abcdef"]])",                       // another module's table
           R"([["sip:x@example.com"]])",                                 // no such table
           R"([["users","sip:x@example.com","x"]])",                     // too few values
           "[" + user.substr(0, user.size() - 1) + ",2]]",               // too many values
           "[" + user.substr(0, user.size() - 2) + "1.5]]",              // not an integer
           "[" + user.substr(0, user.size() - 2) + "\"1\"]]",            // text for an integer
           "[" + user.substr(0, user.size() - 2) + "null]]",             // null
           "[" + user.substr(0, user.size() - 2) + "99999999999999999999]]",  // beyond int64
           "[" + user.substr(0, user.size() - 2) + "[1]]]",              // an array in a row
           "[" + user.substr(0, user.size() - 2) + "{}]]",               // an object in a row
           R"([["users",1,"x","example.com","pool1.example.com","m","s","mf","sf",1]])",  // an integer for text
           "[" + contact + "," + user + "]",                             // out of key order
           "[" + user + "," + user + "]",                                // a key twice
           R"([["contacts","sip:x@example.com","sip:y@example.com","","[1]","pool1.example.com",2]])",  // groups
           R"([["contacts","sip:x@example.com","sip:y@example.com","","{}","pool1.example.com",2]])",
           R"([["privacy_settings","sip:x@example.com","everyone","[]","[]","pool1.example.com",2]])",
           "[\"users\"," + user.substr(1) + "]",                         // a value outside a row
       }) {
    refused("user", chunk);
  }
  refused("conference",
          R"([["meeting_content","0123456789abcdef","a",1,")" + std::string(64, 'a') +
              R"(","pool1.example.com",1,"!!!!"]])");  // bytes not in base64
  refused("conference",
          R"([["meeting_content","0123456789abcdef","a",2,")" + std::string(64, 'a') +
              R"(","pool1.example.com",1,"eA=="]])");  // size does not match
  refused("cms", R"([["cms_versions",0,1,"{}"]])");
  refused("bogus", "[]");
  EXPECT_TRUE(partner_->ListUsers()->empty());
  EXPECT_TRUE(partner_->ListImportProgress()->empty() || partner_->ListImportProgress()->front().snapshot_seq == 0);

  // The same rows well-formed (and a list that is stored as Dump writes it).
  auto applied = partner_->ApplySnapshotChunk(
      "pool1.example.com", "user", "pool1.example.com", 5, true, true,
      "[" + user + R"(,["contacts","sip:x@example.com","sip:y@example.com","Y \"y\"","[ \"Work\" ]",)"
                   R"("pool1.example.com",2]])");
  ASSERT_TRUE(applied) << applied.error().message;
  EXPECT_EQ(applied->applied_seq, 5);
  auto contacts = partner_->ListContacts("sip:x@example.com");
  ASSERT_TRUE(contacts && contacts->size() == 1u);
  EXPECT_EQ(contacts->front().display_name, "Y \"y\"");
  EXPECT_EQ(contacts->front().groups, std::vector<std::string>{"Work"});
}

TEST_P(ReplicationStoreTest, DigestsOfKeyRangesAddUpAndFollowChanges) {
  ASSERT_NO_FATAL_FAILURE(Fill());
  Rows all = Scan(*store_, "user");
  ASSERT_GE(all.size(), 8u);
  // Bounds at a row's key, between keys, and inside an owner's rows.
  for (std::string split : {std::get<0>(all[3]), std::string("sip:b"), std::string("sip:alice@example.com#d"),
                            std::string("sip:alice@example.com#contact:sip:c")}) {
    Rows low = Scan(*store_, "user", "pool1.example.com", "", split);
    Rows high = Scan(*store_, "user", "pool1.example.com", split, "");
    Rows joined = low;
    joined.insert(joined.end(), high.begin(), high.end());
    EXPECT_EQ(joined, all) << split;
    for (const auto& row : low) EXPECT_LT(std::get<0>(row), split);
    EXPECT_EQ(Digest(*store_, "user", "", split).rows + Digest(*store_, "user", split, "").rows,
              static_cast<int64_t>(all.size()));
  }
  Rows middle = Scan(*store_, "user", "pool1.example.com", std::get<0>(all[2]), std::get<0>(all[5]));
  EXPECT_EQ(middle, Rows(all.begin() + 2, all.begin() + 5));

  ASSERT_NO_FATAL_FAILURE(ShipSnapshot("user", 1000));
  const std::string split = "sip:b";
  RowsDigest low = Digest(*store_, "user", "", split);
  RowsDigest high = Digest(*store_, "user", split, "");
  EXPECT_NE(low.sha256, high.sha256);
  ASSERT_TRUE(store_->SetPresenceNote(kBob, "changed"));  // bob's rows are in the high range
  EXPECT_EQ(Digest(*store_, "user", "", split).sha256, low.sha256);
  EXPECT_NE(Digest(*store_, "user", split, "").sha256, high.sha256);
  EXPECT_EQ(Digest(*partner_, "user", split, "").sha256, high.sha256) << "the partner has not seen it yet";
}

TEST_P(ReplicationStoreTest, ScanStopsAtAFailingSinkAndRefusesUnknownModules) {
  ASSERT_NO_FATAL_FAILURE(Fill());
  int calls = 0;
  auto scanned = store_->ScanRows("user", "pool1.example.com", "", "", 2, [&](std::vector<ReplicatedRow>&&) -> Status {
    ++calls;
    return MakeError(ErrorCode::kUnavailable, "partner gone");
  });
  ASSERT_FALSE(scanned);
  EXPECT_EQ(scanned.error().message, "partner gone");
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(store_->ScanRows("bogus", "", "", "", 10, [](auto&&) { return OkStatus(); }).error().code,
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(DigestRows(*store_, "user", "nowhere.example.com", "", "")->rows, 0);
}

TEST_P(StoreTest, NamedLeaseIsExclusiveUntilItExpiresOrIsReleased) {
  auto store = OpenStore();
  auto other_server = OpenStore();
  ASSERT_TRUE(store && other_server);
  const std::string name = "backup:pool1.example.com";
  auto lease = store->TryAcquireNamedLease(name, "fe1", 1000, 2000);
  ASSERT_TRUE(lease) << lease.error().message;
  EXPECT_EQ(lease->name, name);
  EXPECT_EQ(lease->holder, "fe1");
  EXPECT_EQ(lease->expires_at_ms, 2000);

  auto refused = other_server->TryAcquireNamedLease(name, "fe2", 1999, 3000);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->holder, "fe1") << "held and live";
  EXPECT_EQ(refused->expires_at_ms, 2000);
  EXPECT_EQ(store->TryAcquireNamedLease(name, "fe1", 1500, 2500)->expires_at_ms, 2500) << "the holder renews";
  EXPECT_EQ(other_server->TryAcquireNamedLease("backup:pool2.example.com", "fe2", 1500, 2500)->holder, "fe2");

  auto taken = other_server->TryAcquireNamedLease(name, "fe2", 2500, 3500);
  EXPECT_EQ(taken->holder, "fe2") << "expired at 2500: taken over";
  ASSERT_TRUE(store->ReleaseNamedLease(name, "fe1"));  // not the holder: nothing happens
  EXPECT_EQ(store->TryAcquireNamedLease(name, "fe1", 2600, 3600)->holder, "fe2");
  ASSERT_TRUE(other_server->ReleaseNamedLease(name, "fe2"));
  EXPECT_EQ(store->TryAcquireNamedLease(name, "fe1", 2600, 3600)->holder, "fe1") << "released: free";
  EXPECT_TRUE(store->ReadChanges(0, 100)->empty());

  // Many servers at once: exactly one wins.
  std::atomic<int> winners = 0;
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      Store* s = i % 2 ? store.get() : other_server.get();
      auto got = s->TryAcquireNamedLease("race", fmt::format("fe{}", i), 0, 1000);
      EXPECT_TRUE(got);
      if (got && got->holder == fmt::format("fe{}", i)) ++winners;
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(winners.load(), 1);
}

TEST_P(StoreTest, SettingsAreStoredPerKey) {
  auto store = OpenStore();
  ASSERT_TRUE(store);
  auto missing = store->GetSetting("backup.stopped");
  ASSERT_TRUE(missing);
  EXPECT_FALSE(missing->has_value());
  ASSERT_TRUE(store->SetSetting("backup.stopped", "true"));
  ASSERT_TRUE(store->SetSetting("other", ""));
  EXPECT_EQ(**store->GetSetting("backup.stopped"), "true");
  ASSERT_TRUE(store->SetSetting("backup.stopped", "false"));
  EXPECT_EQ(**OpenStore()->GetSetting("backup.stopped"), "false");
  EXPECT_EQ(**store->GetSetting("other"), "");
  EXPECT_TRUE(store->ReadChanges(0, 100)->empty());
}

// ---- Back-end independent ----------------------------------------------------------

TEST(StoreTextTest, Utf8AndContentNames) {
  EXPECT_TRUE(IsValidUtf8("plain"));
  EXPECT_TRUE(IsValidUtf8("Präsentation ☀ 𝄞"));
  EXPECT_FALSE(IsValidUtf8("\xff"));
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // a surrogate
  EXPECT_FALSE(IsValidUtf8("\xe2\x98"));          // truncated
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_TRUE(IsValidContentName("Präsentation.pptx"));
  for (const char* bad : {"", ".", "..", "a/b", "a\\b", "tab\there"}) EXPECT_FALSE(IsValidContentName(bad)) << bad;
  EXPECT_FALSE(IsValidContentName(std::string(256, 'a')));
}

TEST(StoreTextTest, PayloadTextIsWhatNlohmannWrites) {
  std::vector<std::string> texts = {"", "plain", "quote \" backslash \\ slash /", "Präsentation ☀ 𝄞", "\x7f",
                                    "\xff invalid", "\xed\xa0\x80", std::string("nul \0 inside", 13)};
  std::string controls;
  for (int c = 0; c < 0x20; ++c) controls += static_cast<char>(c);
  texts.push_back(controls);
  for (const std::string& text : texts) {
    std::string written;
    AppendJsonString(written, text);
    EXPECT_EQ(written, Dump(json(text))) << text;
  }
  // The payloads written member by member read as Dump of the same object.
  ContactRecord contact{"sip:alice@example.com", "sip:bob@example.com", texts[2], {"Work", texts[3]},
                        "pool1.example.com", -5};
  EXPECT_EQ(ContactPayloadJson(contact), Dump(json{{"owner", contact.owner},
                                                   {"contact", contact.contact},
                                                   {"display_name", contact.display_name},
                                                   {"groups", contact.groups},
                                                   {"home_pool", contact.home_pool},
                                                   {"updated_at_ms", contact.updated_at_ms}}));
  UserRecord user{"sip:a@example.com", "a", "example.com", "pool1.example.com", "m", "s", "mf", "sf", 1700000000000};
  EXPECT_EQ(UserPayloadJson(user), Dump(json{{"uri", user.uri},
                                             {"username", user.username},
                                             {"domain", user.domain},
                                             {"home_pool", user.home_pool},
                                             {"ha1_md5", user.ha1_md5},
                                             {"ha1_sha256", user.ha1_sha256},
                                             {"ha1_md5_full", user.ha1_md5_full},
                                             {"ha1_sha256_full", user.ha1_sha256_full},
                                             {"created_at_ms", user.created_at_ms}}));
  EXPECT_EQ(ContactGroupPayloadJson({"o", "Work", "p", 3}),
            Dump(json{{"owner", "o"}, {"name", "Work"}, {"home_pool", "p"}, {"created_at_ms", 3}}));
  EXPECT_EQ(PresenceNotePayloadJson({"o", "n\n", "p", 4}),
            Dump(json{{"owner", "o"}, {"note", "n\n"}, {"home_pool", "p"}, {"updated_at_ms", 4}}));
}

TEST(StoreMigrationsTest, BothBackEndsHaveTheSameVersions) {
  auto sqlite = SqliteMigrations();
  auto postgres = PostgresMigrations();
  ASSERT_EQ(sqlite.size(), postgres.size());
  for (size_t i = 0; i < sqlite.size(); ++i) {
    EXPECT_EQ(sqlite[i].version, static_cast<int>(i) + 1);
    EXPECT_EQ(postgres[i].version, sqlite[i].version);
    EXPECT_STREQ(postgres[i].name, sqlite[i].name);
  }
}

// ---- SQLite only -------------------------------------------------------------------

TEST(SqliteStoreTest, UnwritablePathIsAClearError) {
  auto store = OpenSqliteStore("/nonexistent-dir/sub/pool.db");
  ASSERT_FALSE(store);
  EXPECT_NE(store.error().message.find("/nonexistent-dir/sub/pool.db"), std::string::npos);
}

// ---- PostgreSQL only ---------------------------------------------------------------

// A TCP port on 127.0.0.1 where nothing listens (bound, then released).
int UnusedPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  TANDEM_CHECK(fd >= 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  TANDEM_CHECK(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  socklen_t length = sizeof address;
  TANDEM_CHECK(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0);
  ::close(fd);
  return ntohs(address.sin_port);
}

// Waits (polling, bounded) until `condition` holds.
bool WaitFor(const std::function<bool()>& condition, milliseconds timeout = milliseconds(20'000)) {
  auto deadline = steady_clock::now() + timeout;
  while (!condition()) {
    if (steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(5));
  }
  return true;
}

// Needs no server: nothing listens on the port.
TEST(PostgresConnectTest, UnreachableServerIsAClearErrorWithinTheRetryBudget) {
  int port = UnusedPort();
  PostgresStoreOptions options;
  options.retry_budget = milliseconds(600);
  auto start = steady_clock::now();
  auto store = OpenPostgresStore(fmt::format("host=127.0.0.1 port={} user=postgres dbname=tandem", port), options);
  auto spent = steady_clock::now() - start;
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(store.error().message.find(fmt::format("port={}", port)), std::string::npos) << store.error().message;
  EXPECT_NE(store.error().message.find("gave up after"), std::string::npos) << store.error().message;
  EXPECT_GE(spent, milliseconds(300)) << "it retried with backoff";
  EXPECT_LT(spent, milliseconds(5'000)) << "and gave up within its budget";
}

class PostgresStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { REQUIRE_PG_SERVER(); }
};

TEST_F(PostgresStoreTest, ReconnectsAndRetriesAfterTheServerDropsItsSessions) {
  PostgresLocation location(PgServer::Get().dsn());
  auto store = location.Open();
  ASSERT_TRUE(store) << store.error().message;
  ASSERT_TRUE((*store)->AddUsers({User("alice")}));
  size_t changes = (*store)->ReadChanges(0, 100)->size();

  ASSERT_GE(location.TerminateStoreSessions(), 1);
  auto users = (*store)->ListUsers();  // a read on a dead connection: reconnects, reads
  ASSERT_TRUE(users) << users.error().message;
  EXPECT_EQ(users->size(), 1u);

  ASSERT_GE(location.TerminateStoreSessions(), 1);
  auto added = (*store)->AddContactGroup(kAlice, "Friends");  // a write lost before COMMIT: run again
  ASSERT_TRUE(added) << added.error().message;
  EXPECT_EQ((*store)->ReadChanges(0, 100)->size(), changes + 1) << "exactly one change for one write";
  EXPECT_EQ((*store)->ListContactGroups(kAlice)->size(), 1u);
}

TEST_F(PostgresStoreTest, LostCommitIsReportedAsUnknownAndNotRetried) {
  std::atomic<int> commits = 0;
  std::atomic<bool> cut = false;
  PostgresStoreOptions options;
  options.before_commit_for_testing = [&](int backend_pid) {
    ++commits;
    if (cut.exchange(false)) {
      // The server session ends between the last statement and COMMIT.
      PgConnection(PgServer::Get().dsn()).Exec(fmt::format("SELECT pg_terminate_backend({}, 10000)", backend_pid));
    }
  };
  PostgresLocation location(PgServer::Get().dsn(), options);
  auto store = location.Open();
  ASSERT_TRUE(store) << store.error().message;
  ASSERT_TRUE((*store)->AddUsers({User("alice")}));
  int before = commits.load();

  cut = true;
  auto added = (*store)->AddContactGroup(kAlice, "Friends");
  ASSERT_FALSE(added);
  EXPECT_EQ(added.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(added.error().message.find("unknown"), std::string::npos) << added.error().message;
  EXPECT_EQ(commits.load(), before + 1) << "a COMMIT of unknown outcome must not be run again";

  // The caller finds out what happened (here: the session died before committing),
  // and the store works again on a new connection.
  EXPECT_TRUE((*store)->ListContactGroups(kAlice)->empty());
  EXPECT_TRUE((*store)->AddContactGroup(kAlice, "Friends"));
  EXPECT_EQ((*store)->ListContactGroups(kAlice)->size(), 1u);
}

// Deterministic proof of the commit-order rule: while a writer that already drew its
// seq has not committed, a second writer (another server) waits on the writer lock
// and draws a later seq only after the first committed.
TEST_F(PostgresStoreTest, WritersCommitInSeqOrder) {
  std::mutex mu;
  std::condition_variable cv;
  bool paused = false;
  bool release = false;
  std::atomic<bool> pause_next = false;
  PostgresStoreOptions options;
  options.before_commit_for_testing = [&](int) {
    if (!pause_next.exchange(false)) return;
    std::unique_lock lock(mu);
    paused = true;
    cv.notify_all();
    cv.wait(lock, [&] { return release; });
  };
  PostgresLocation location(PgServer::Get().dsn(), options);
  auto first = location.Open();
  auto second = location.Open(PostgresStoreOptions{});
  ASSERT_TRUE(first && second);
  ASSERT_TRUE((*first)->AddUsers({User("alice")}));
  int64_t base = (*first)->ReadChanges(0, 100)->back().seq;

  pause_next = true;
  std::thread first_writer([&] { EXPECT_TRUE((*first)->AddContactGroup(kAlice, "first")); });
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return paused; });
  }
  std::atomic<bool> second_done = false;
  std::thread second_writer([&] {
    EXPECT_TRUE((*second)->AddContactGroup(kAlice, "second"));
    second_done = true;
  });
  // The second writer is blocked on the advisory lock, not finished.
  PgConnection inspector(location.dsn());
  ASSERT_TRUE(WaitFor([&] {
    return inspector.Exec(fmt::format("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                                      "WHERE l.locktype = 'advisory' AND NOT l.granted AND a.application_name = '{}'",
                                      location.schema())) == "1";
  }));
  EXPECT_FALSE(second_done.load());
  EXPECT_EQ((*first)->ReadChanges(base, 100)->size(), 0u) << "nothing is visible before the first commits";
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  first_writer.join();
  second_writer.join();

  auto changes = (*first)->ReadChanges(base, 100);
  ASSERT_TRUE(changes);
  ASSERT_EQ(changes->size(), 2u);
  EXPECT_EQ((*changes)[0].key, ContactGroupChangeKey(kAlice, "first"));
  EXPECT_EQ((*changes)[1].key, ContactGroupChangeKey(kAlice, "second"));
  EXPECT_LT((*changes)[0].seq, (*changes)[1].seq);
}

TEST_F(PostgresStoreTest, TextPostgresCannotHoldIsRefusedNotTruncated) {
  PostgresLocation location(PgServer::Get().dsn());
  auto store = location.Open();
  ASSERT_TRUE(store);
  ASSERT_TRUE((*store)->AddUsers({User("alice")}));
  // Valid UTF-8, but PostgreSQL text cannot contain NUL (SQLite's can).
  auto set = (*store)->SetPresenceNote(kAlice, std::string("before\0after", 12));
  ASSERT_FALSE(set);
  EXPECT_EQ(set.error().code, ErrorCode::kInvalidArgument) << set.error().message;
  EXPECT_EQ((*store)->GetPresenceNote(kAlice)->updated_at_ms, 0);
  EXPECT_EQ((*store)->ReadChanges(0, 100)->size(), 1u);
}

// Back-end failover: a primary with a synchronous standby; the primary dies, the
// standby is promoted, and a store opened with the multi-host DSN carries on there
// with every acknowledged change, including a write issued during the outage.
TEST_F(PostgresStoreTest, FollowsThePromotedStandbyAfterThePrimaryDies) {
  std::string dir = TempDir();
  bool not_installed = false;
  std::string error = StartCluster(dir, "--standby", &not_installed);
  if (not_installed) {
    StopCluster(dir);
    GTEST_SKIP() << "PostgreSQL is not installed: no standby to fail over to";
  }
  struct Cleanup {
    std::string dir;
    ~Cleanup() { StopCluster(dir); }
  } cleanup{dir};
  ASSERT_EQ(error, "");
  std::string dsn = Trimmed(ReadFile(dir + "/multi.dsn"));
  ASSERT_NE(dsn.find("target_session_attrs=read-write"), std::string::npos);

  auto store = OpenPostgresStore(dsn, PostgresStoreOptions{});
  ASSERT_TRUE(store) << store.error().message;
  ASSERT_TRUE((*store)->AddUsers({User("alice")}));  // acknowledged: on the standby too

  ASSERT_EQ(Shell(fmt::format("'{}' stop '{}' primary --immediate", kClusterScript, dir)), 0);
  // A write during the outage keeps retrying until the standby takes over.
  std::thread writer([&] {
    auto added = (*store)->AddUsers({User("bob")});
    EXPECT_TRUE(added) << added.error().message;
  });
  int promoted = Shell(fmt::format("'{}' promote '{}' >/dev/null", kClusterScript, dir));
  writer.join();
  ASSERT_EQ(promoted, 0);

  auto users = (*store)->ListUsers();
  ASSERT_TRUE(users) << users.error().message;
  ASSERT_EQ(users->size(), 2u);
  EXPECT_EQ((*users)[0].uri, kAlice);
  EXPECT_EQ((*users)[1].uri, kBob);
  auto changes = (*store)->ReadChanges(0, 100);
  ASSERT_TRUE(changes);
  ASSERT_EQ(changes->size(), 2u);
  EXPECT_LT((*changes)[0].seq, (*changes)[1].seq);
  EXPECT_TRUE((*store)->AddContactGroup(kAlice, "after failover"));
}

}  // namespace
}  // namespace tandem
