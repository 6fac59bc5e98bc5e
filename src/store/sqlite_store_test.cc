#include "store/sqlite_store.h"

#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include <filesystem>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "store/migrations.h"

namespace tandem {
namespace {

std::string TempDir() {
  std::string dir = (std::filesystem::temp_directory_path() / "tandem-store-XXXXXX").string();
  TANDEM_CHECK(::mkdtemp(dir.data()) != nullptr);
  return dir;
}

TEST(SqliteStoreTest, MigratesToNewestVersionAndIsIdempotent) {
  std::string path = TempDir() + "/pool.db";
  {
    auto store = OpenSqliteStore(path);
    ASSERT_TRUE(store) << store.error().message;
    auto version = (*store)->SchemaVersion();
    ASSERT_TRUE(version);
    EXPECT_EQ(*version, SqliteMigrations().back().version);
  }
  auto reopened = OpenSqliteStore(path);  // migrations already applied: nothing to do
  ASSERT_TRUE(reopened) << reopened.error().message;
  EXPECT_EQ(*(*reopened)->SchemaVersion(), SqliteMigrations().back().version);
}

TEST(SqliteStoreTest, ConcurrentProcessesMigrateOnce) {
  std::string path = TempDir() + "/pool.db";
  std::vector<pid_t> children;
  for (int i = 0; i < 4; ++i) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      auto store = OpenSqliteStore(path);
      ::_exit(store ? 0 : 1);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  auto store = OpenSqliteStore(path);
  ASSERT_TRUE(store);
  EXPECT_EQ(*(*store)->SchemaVersion(), SqliteMigrations().back().version);
}

TEST(SqliteStoreTest, CmsVersionsAppendInOrder) {
  auto store = OpenSqliteStore(TempDir() + "/pool.db");
  ASSERT_TRUE(store);
  auto empty = (*store)->LatestCmsVersion();
  ASSERT_TRUE(empty);
  EXPECT_FALSE(empty->has_value());

  ASSERT_TRUE((*store)->AppendCmsVersion({1, 1000, "{\"v\":1}"}, 0));
  ASSERT_TRUE((*store)->AppendCmsVersion({2, 2000, "{\"v\":2}"}, 1));
  auto latest = (*store)->LatestCmsVersion();
  ASSERT_TRUE(latest && latest->has_value());
  EXPECT_EQ((*latest)->version, 2);
  EXPECT_EQ((*latest)->document, "{\"v\":2}");
}

TEST(SqliteStoreTest, ConcurrentPublishIsDetected) {
  auto store = OpenSqliteStore(TempDir() + "/pool.db");
  ASSERT_TRUE(store);
  ASSERT_TRUE((*store)->AppendCmsVersion({1, 1000, "a"}, 0));
  // A second writer that still believes version 0 is newest must not overwrite.
  auto stale = (*store)->AppendCmsVersion({1, 1001, "b"}, 0);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, ErrorCode::kAlreadyExists);
  EXPECT_EQ((*(*store)->LatestCmsVersion())->document, "a");
}

UserRecord User(const std::string& name) {
  return UserRecord{"sip:" + name + "@example.com", name, "example.com", "pool1.example.com", "m", "s", "mf", "sf", 42};
}

TEST(SqliteStoreTest, EveryUserMutationAppendsOneChangeInOrder) {
  auto store = OpenSqliteStore(TempDir() + "/pool.db");
  ASSERT_TRUE(store);
  ASSERT_TRUE((*store)->AddUsers({User("alice"), User("bob")}));
  ASSERT_TRUE((*store)->RemoveUser("sip:alice@example.com"));
  auto changes = (*store)->ReadChanges(0, 100);
  ASSERT_TRUE(changes);
  ASSERT_EQ(changes->size(), 3u);
  EXPECT_EQ((*changes)[0].key, "sip:alice@example.com");
  EXPECT_EQ((*changes)[0].op, "upsert");
  EXPECT_EQ((*changes)[0].module, "user");
  EXPECT_EQ((*changes)[0].home_pool, "pool1.example.com");
  EXPECT_EQ((*changes)[1].key, "sip:bob@example.com");
  EXPECT_EQ((*changes)[2].op, "delete");
  EXPECT_LT((*changes)[0].seq, (*changes)[1].seq);
  EXPECT_LT((*changes)[1].seq, (*changes)[2].seq);
  auto after = (*store)->ReadChanges((*changes)[1].seq, 100);
  ASSERT_TRUE(after);
  ASSERT_EQ(after->size(), 1u);
  EXPECT_EQ((*after)[0].op, "delete");

  auto bob = (*store)->FindUser("bob", "example.com");
  ASSERT_TRUE(bob && bob->has_value());
  EXPECT_EQ((*bob)->ha1_sha256_full, "sf");
  EXPECT_FALSE((*(*store)->FindUser("alice", "example.com")).has_value());
}

TEST(SqliteStoreTest, FailedWriteLeavesNeitherRowsNorChanges) {
  auto store = OpenSqliteStore(TempDir() + "/pool.db");
  ASSERT_TRUE(store);
  ASSERT_TRUE((*store)->AddUsers({User("bob")}));
  // carol is new but bob exists: the whole batch is refused, carol included.
  auto added = (*store)->AddUsers({User("carol"), User("bob")});
  ASSERT_FALSE(added);
  EXPECT_EQ(added.error().code, ErrorCode::kAlreadyExists);
  EXPECT_NE(added.error().message.find("sip:bob@example.com"), std::string::npos);
  EXPECT_EQ((*store)->ListUsers()->size(), 1u);
  EXPECT_EQ((*store)->ReadChanges(0, 100)->size(), 1u);

  auto removed = (*store)->RemoveUser("sip:nobody@example.com");
  ASSERT_FALSE(removed);
  EXPECT_EQ(removed.error().code, ErrorCode::kNotFound);
  EXPECT_EQ((*store)->ReadChanges(0, 100)->size(), 1u);
}

TEST(SqliteStoreTest, UnwritablePathIsAClearError) {
  auto store = OpenSqliteStore("/nonexistent-dir/sub/pool.db");
  ASSERT_FALSE(store);
  EXPECT_NE(store.error().message.find("/nonexistent-dir/sub/pool.db"), std::string::npos);
}

// ---- User data and conference data -------------------------------------------------

using nlohmann::json;

constexpr const char* kAlice = "sip:alice@example.com";
constexpr const char* kBob = "sip:bob@example.com";

// A fresh store with alice and bob provisioned in pool1; remembers the path so a
// test can open a second, raw connection to inject faults.
struct DataStore {
  std::string path = TempDir() + "/pool.db";
  std::unique_ptr<Store> store;

  DataStore() {
    auto opened = OpenSqliteStore(path);
    TANDEM_CHECK(opened.has_value());
    store = std::move(*opened);
    TANDEM_CHECK(store->AddUsers({User("alice"), User("bob")}).has_value());
  }
  int64_t LastSeq() {
    auto changes = store->ReadChanges(0, 1000000);
    TANDEM_CHECK(changes.has_value());
    return changes->empty() ? 0 : changes->back().seq;
  }
  size_t ChangeCount() { return store->ReadChanges(0, 1000000)->size(); }
  // Runs SQL on a second connection to the same file (as another process would).
  void RawExec(const std::string& sql) {
    sqlite3* db = nullptr;
    TANDEM_CHECK(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    char* message = nullptr;
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &message);
    if (rc != SQLITE_OK) std::fprintf(stderr, "%s\n", message ? message : "?");
    sqlite3_free(message);
    sqlite3_close(db);
    TANDEM_CHECK(rc == SQLITE_OK);
  }
};

// Checks that exactly one record was appended since `before_seq` and returns it.
ChangeRecord OnlyChangeSince(DataStore& data, int64_t before_seq) {
  auto changes = data.store->ReadChanges(before_seq, 100);
  TANDEM_CHECK(changes.has_value());
  EXPECT_EQ(changes->size(), 1u);
  return changes->empty() ? ChangeRecord{} : changes->front();
}

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

TEST(UserDataStoreTest, EveryMutationAppendsExactlyOneChangeWithIncreasingSeq) {
  DataStore data;
  int64_t seq = data.LastSeq();
  auto expect_one = [&](std::string_view op, const std::string& key) {
    ChangeRecord change = OnlyChangeSince(data, seq);
    EXPECT_GT(change.seq, seq);
    EXPECT_EQ(change.module, "user");
    EXPECT_EQ(change.home_pool, "pool1.example.com");
    EXPECT_EQ(change.key, key);
    EXPECT_EQ(change.op, op);
    seq = change.seq;
    return change;
  };

  ASSERT_TRUE(data.store->AddContactGroup(kAlice, "Friends"));
  json group = json::parse(expect_one("upsert", "sip:alice@example.com#group:Friends").payload);
  EXPECT_EQ(group["name"], "Friends");

  ASSERT_TRUE(data.store->UpsertContact({kAlice, kBob, "Bob B.", {"Friends", "Friends"}}));
  json contact = json::parse(expect_one("upsert", "sip:alice@example.com#contact:sip:bob@example.com").payload);
  EXPECT_EQ(contact["display_name"], "Bob B.");
  EXPECT_EQ(contact["groups"], json::array({"Friends"}));  // duplicates dropped
  EXPECT_EQ(contact["owner"], kAlice);

  ASSERT_TRUE(data.store->UpsertContact({kAlice, kBob, "Bobby", {}}));  // replace: still one record
  EXPECT_EQ(json::parse(expect_one("upsert", ContactChangeKey(kAlice, kBob)).payload)["display_name"], "Bobby");

  ASSERT_TRUE(data.store->SetPresenceNote(kAlice, "In meetings all day"));
  EXPECT_EQ(json::parse(expect_one("upsert", "sip:alice@example.com#note").payload)["note"], "In meetings all day");

  auto privacy = data.store->UpdatePrivacy(kAlice, {.policy = PrivacyPolicy::kAllowListed, .allow = {{kBob}}});
  ASSERT_TRUE(privacy);
  json privacy_payload = json::parse(expect_one("upsert", "sip:alice@example.com#privacy").payload);
  EXPECT_EQ(privacy_payload["policy"], "allow-listed");
  EXPECT_EQ(privacy_payload["allow"], json::array({kBob}));
  EXPECT_EQ(privacy_payload["block"], json::array());

  ASSERT_TRUE(data.store->RemoveContact(kAlice, kBob));
  EXPECT_EQ(expect_one("delete", ContactChangeKey(kAlice, kBob)).payload, "");
  ASSERT_TRUE(data.store->RemoveContactGroup(kAlice, "Friends"));
  expect_one("delete", ContactGroupChangeKey(kAlice, "Friends"));
}

TEST(UserDataStoreTest, ReadsReturnWhatWasWritten) {
  DataStore data;
  ASSERT_TRUE(data.store->AddContactGroup(kAlice, "Work"));
  ASSERT_TRUE(data.store->AddContactGroup(kAlice, "Friends"));
  ASSERT_TRUE(data.store->UpsertContact({kAlice, "sip:carol@example.com", "Carol", {"Work"}}));
  ASSERT_TRUE(data.store->UpsertContact({kAlice, kBob, "", {"Work", "Friends"}}));

  auto contacts = data.store->ListContacts(kAlice);
  ASSERT_TRUE(contacts);
  ASSERT_EQ(contacts->size(), 2u);
  EXPECT_EQ((*contacts)[0].contact, kBob);  // sorted by URI
  EXPECT_EQ((*contacts)[0].groups, (std::vector<std::string>{"Work", "Friends"}));
  EXPECT_EQ((*contacts)[0].home_pool, "pool1.example.com");
  EXPECT_EQ((*contacts)[1].display_name, "Carol");
  EXPECT_TRUE(data.store->ListContacts(kBob)->empty());

  auto groups = data.store->ListContactGroups(kAlice);
  ASSERT_TRUE(groups);
  ASSERT_EQ(groups->size(), 2u);
  EXPECT_EQ((*groups)[0].name, "Friends");

  auto note = data.store->GetPresenceNote(kAlice);
  ASSERT_TRUE(note);
  EXPECT_EQ(note->note, "");
  EXPECT_EQ(note->updated_at_ms, 0);
  ASSERT_TRUE(data.store->SetPresenceNote(kAlice, "Out until Monday ☀"));
  EXPECT_EQ(data.store->GetPresenceNote(kAlice)->note, "Out until Monday ☀");

  auto defaults = data.store->GetPrivacy(kAlice);
  ASSERT_TRUE(defaults);
  EXPECT_EQ(defaults->policy, PrivacyPolicy::kAllowContacts);
  EXPECT_TRUE(defaults->allow.empty());
  EXPECT_EQ(defaults->home_pool, "pool1.example.com");
  ASSERT_TRUE(data.store->UpdatePrivacy(kAlice, {.block = {{"spam.example.net"}}}));
  ASSERT_TRUE(data.store->UpdatePrivacy(kAlice, {.policy = PrivacyPolicy::kAllowAll}));
  auto privacy = data.store->GetPrivacy(kAlice);
  ASSERT_TRUE(privacy);
  EXPECT_EQ(privacy->policy, PrivacyPolicy::kAllowAll);  // absent fields kept
  EXPECT_EQ(privacy->block, std::vector<std::string>{"spam.example.net"});
}

TEST(UserDataStoreTest, RefusalsLeaveNeitherRowNorChange) {
  DataStore data;
  ASSERT_TRUE(data.store->AddContactGroup(kAlice, "Friends"));
  size_t changes = data.ChangeCount();
  auto expect_refused = [&](const auto& status, ErrorCode code) {
    ASSERT_FALSE(status);
    EXPECT_EQ(status.error().code, code) << status.error().message;
    EXPECT_EQ(data.ChangeCount(), changes);
  };
  const std::string kNobody = "sip:nobody@example.com";
  expect_refused(data.store->UpsertContact({kNobody, kBob, "", {}}), ErrorCode::kNotFound);
  expect_refused(data.store->RemoveContact(kAlice, kBob), ErrorCode::kNotFound);
  expect_refused(data.store->RemoveContact(kNobody, kBob), ErrorCode::kNotFound);
  expect_refused(data.store->UpsertContact({kAlice, kBob, "", {"Friends", "Nope"}}), ErrorCode::kFailedPrecondition);
  expect_refused(data.store->UpsertContact({kAlice, kAlice, "", {}}), ErrorCode::kInvalidArgument);
  expect_refused(data.store->UpsertContact({kAlice, kBob, "bad \xff utf-8", {}}), ErrorCode::kInvalidArgument);
  expect_refused(data.store->AddContactGroup(kAlice, "Friends"), ErrorCode::kAlreadyExists);
  expect_refused(data.store->AddContactGroup(kNobody, "Friends"), ErrorCode::kNotFound);
  expect_refused(data.store->RemoveContactGroup(kAlice, "Nope"), ErrorCode::kNotFound);
  expect_refused(data.store->SetPresenceNote(kNobody, "hi"), ErrorCode::kNotFound);
  expect_refused(data.store->UpdatePrivacy(kNobody, {}), ErrorCode::kNotFound);
  EXPECT_TRUE(data.store->ListContacts(kAlice)->empty());
  EXPECT_EQ(data.store->ListContacts(kNobody).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(data.store->GetPresencePolicy(kNobody).error().code, ErrorCode::kNotFound);

  // A group still in use cannot go; the contact has to leave it first.
  ASSERT_TRUE(data.store->UpsertContact({kAlice, kBob, "", {"Friends"}}));
  changes = data.ChangeCount();
  expect_refused(data.store->RemoveContactGroup(kAlice, "Friends"), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(data.store->ListContactGroups(kAlice)->size(), 1u);
}

TEST(UserDataStoreTest, InjectedChangeLogFailureRollsBackTheRow) {
  DataStore data;
  data.RawExec(
      "CREATE TRIGGER injected_failure BEFORE INSERT ON change_log "
      "BEGIN SELECT RAISE(ABORT, 'injected change-log failure'); END");
  size_t changes = data.ChangeCount();
  auto added = data.store->AddContactGroup(kAlice, "Friends");
  ASSERT_FALSE(added);
  EXPECT_NE(added.error().message.find("injected"), std::string::npos);
  EXPECT_FALSE(data.store->UpsertContact({kAlice, kBob, "Bob", {}}));
  EXPECT_FALSE(data.store->SetPresenceNote(kAlice, "note"));
  EXPECT_FALSE(data.store->UpdatePrivacy(kAlice, {.policy = PrivacyPolicy::kAllowAll}));
  EXPECT_FALSE(data.store->CreateMeeting(Meeting("00112233445566aa")));

  EXPECT_EQ(data.ChangeCount(), changes);
  EXPECT_TRUE(data.store->ListContactGroups(kAlice)->empty());
  EXPECT_TRUE(data.store->ListContacts(kAlice)->empty());
  EXPECT_EQ(data.store->GetPresenceNote(kAlice)->updated_at_ms, 0);
  EXPECT_EQ(data.store->GetPrivacy(kAlice)->policy, PrivacyPolicy::kAllowContacts);
  EXPECT_FALSE(data.store->GetMeeting("00112233445566aa")->has_value());

  data.RawExec("DROP TRIGGER injected_failure");
  EXPECT_TRUE(data.store->AddContactGroup(kAlice, "Friends"));
  EXPECT_EQ(data.ChangeCount(), changes + 1);
}

TEST(UserDataStoreTest, PresencePolicyDecidesWhoSeesPresence) {
  DataStore data;
  ASSERT_TRUE(data.store->UpsertContact({kAlice, kBob, "", {}}));
  auto policy = data.store->GetPresencePolicy(kAlice);
  ASSERT_TRUE(policy);
  EXPECT_EQ(policy->contacts, std::vector<std::string>{kBob});
  EXPECT_TRUE(policy->Allows(kAlice));  // always sees herself
  EXPECT_TRUE(policy->Allows(kBob));    // a contact, default policy
  EXPECT_FALSE(policy->Allows("sip:carol@example.com"));

  ASSERT_TRUE(data.store->UpdatePrivacy(kAlice, {.allow = {{"sip:carol@example.com"}}, .block = {{"example.com"}}}));
  policy = data.store->GetPresencePolicy(kAlice);
  ASSERT_TRUE(policy);
  EXPECT_FALSE(policy->Allows(kBob)) << "a blocked domain wins over the contact list";
  EXPECT_FALSE(policy->Allows("sip:carol@example.com")) << "and over the allow list";
  EXPECT_TRUE(policy->Blocks(kBob));
  EXPECT_FALSE(policy->Blocks(kAlice)) << "owners are never blocked from themselves";
  EXPECT_FALSE(policy->Blocks("sip:dave@other.example.org"));
  EXPECT_TRUE(policy->Allows(kAlice));

  ASSERT_TRUE(data.store->UpdatePrivacy(kAlice, {.policy = PrivacyPolicy::kAllowListed, .block = {{}}}));
  policy = data.store->GetPresencePolicy(kAlice);
  EXPECT_FALSE(policy->Allows(kBob)) << "allow-listed ignores the contact list";
  EXPECT_TRUE(policy->Allows("sip:carol@example.com"));

  ASSERT_TRUE(data.store->UpdatePrivacy(kAlice, {.policy = PrivacyPolicy::kAllowAll, .block = {{kBob}}}));
  policy = data.store->GetPresencePolicy(kAlice);
  EXPECT_TRUE(policy->Allows("sip:dave@other.example.org"));
  EXPECT_FALSE(policy->Allows(kBob));
}

TEST(ConferenceStoreTest, MeetingLifecycleAppendsOneChangeEach) {
  DataStore data;
  int64_t seq = data.LastSeq();
  auto created = data.store->CreateMeeting(Meeting("0123456789abcdef"));
  ASSERT_TRUE(created) << created.error().message;
  EXPECT_EQ(created->home_pool, "pool1.example.com");
  EXPECT_EQ(created->state, MeetingState::kScheduled);
  EXPECT_GT(created->created_ms, 0);
  ChangeRecord change = OnlyChangeSince(data, seq);
  EXPECT_EQ(change.module, "conference");
  EXPECT_EQ(change.key, "meeting:0123456789abcdef");
  EXPECT_EQ(change.op, "upsert");
  json payload = json::parse(change.payload);
  EXPECT_EQ(payload["pin"], "123456");
  EXPECT_EQ(payload["lobby"], "attendees-only");
  EXPECT_EQ(payload["attendees"].size(), 2u);
  seq = change.seq;

  auto updated = data.store->UpdateMeeting("0123456789abcdef", {.subject = "Q3 review", .lobby = LobbyPolicy::kOpen});
  ASSERT_TRUE(updated);
  EXPECT_EQ(updated->subject, "Q3 review");
  EXPECT_EQ(updated->pin, "123456");  // kept
  change = OnlyChangeSince(data, seq);
  EXPECT_EQ(json::parse(change.payload)["subject"], "Q3 review");
  EXPECT_EQ(json::parse(change.payload)["lobby"], "open");
  seq = change.seq;

  auto cancelled = data.store->CancelMeeting("0123456789abcdef");
  ASSERT_TRUE(cancelled);
  EXPECT_EQ(cancelled->state, MeetingState::kCancelled);
  change = OnlyChangeSince(data, seq);
  EXPECT_EQ(change.op, "upsert");
  EXPECT_EQ(json::parse(change.payload)["state"], "cancelled");

  auto stored = data.store->GetMeeting("0123456789abcdef");
  ASSERT_TRUE(stored && stored->has_value());
  EXPECT_EQ((*stored)->state, MeetingState::kCancelled);
  EXPECT_EQ((*stored)->subject, "Q3 review");
  EXPECT_EQ((*stored)->attendees, (std::vector<std::string>{kBob, "sip:carol@example.com"}));
}

TEST(ConferenceStoreTest, MeetingRefusalsLeaveNeitherRowNorChange) {
  DataStore data;
  ASSERT_TRUE(data.store->CreateMeeting(Meeting("0123456789abcdef")));
  size_t changes = data.ChangeCount();
  auto expect_refused = [&](const auto& result, ErrorCode code) {
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, code) << result.error().message;
    EXPECT_EQ(data.ChangeCount(), changes);
  };
  expect_refused(data.store->CreateMeeting(Meeting("0123456789abcdef")), ErrorCode::kAlreadyExists);
  expect_refused(data.store->CreateMeeting(Meeting("1123456789abcdef", "sip:nobody@example.com")), ErrorCode::kNotFound);
  expect_refused(data.store->CreateMeeting(Meeting("0123456789ABCDEF")), ErrorCode::kInvalidArgument);
  MeetingRecord bad_pin = Meeting("2123456789abcdef");
  bad_pin.pin = "12a4";
  expect_refused(data.store->CreateMeeting(bad_pin), ErrorCode::kInvalidArgument);
  MeetingRecord backwards = Meeting("3123456789abcdef");
  backwards.end_ms = backwards.start_ms;
  expect_refused(data.store->CreateMeeting(backwards), ErrorCode::kInvalidArgument);
  // The merged result is checked: moving the end before the start is refused.
  expect_refused(data.store->UpdateMeeting("0123456789abcdef", {.end_ms = 1}), ErrorCode::kInvalidArgument);
  expect_refused(data.store->UpdateMeeting("ffffffffffffffff", {.subject = "x"}), ErrorCode::kNotFound);
  EXPECT_EQ((*data.store->GetMeeting("0123456789abcdef"))->end_ms, Meeting("x").end_ms);

  ASSERT_TRUE(data.store->CancelMeeting("0123456789abcdef"));
  changes = data.ChangeCount();
  expect_refused(data.store->CancelMeeting("0123456789abcdef"), ErrorCode::kFailedPrecondition);
  expect_refused(data.store->UpdateMeeting("0123456789abcdef", {.subject = "x"}), ErrorCode::kFailedPrecondition);
  expect_refused(data.store->PutContent({"0123456789abcdef", "a.txt", 0, std::string(64, 'a')}, "x"),
                 ErrorCode::kFailedPrecondition);
}

TEST(ConferenceStoreTest, ListsMeetingsByOrganizerAndPool) {
  DataStore data;
  MeetingRecord later = Meeting("00000000000000bb");
  later.start_ms += 1000;
  later.end_ms += 1000;
  ASSERT_TRUE(data.store->CreateMeeting(later));
  ASSERT_TRUE(data.store->CreateMeeting(Meeting("00000000000000aa")));
  ASSERT_TRUE(data.store->CreateMeeting(Meeting("00000000000000cc", kBob)));
  auto all = data.store->ListMeetings({});
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].id, "00000000000000aa");  // by start time
  EXPECT_EQ(data.store->ListMeetings({.organizer = kAlice})->size(), 2u);
  EXPECT_EQ(data.store->ListMeetings({.organizer = kBob, .home_pool = "pool1.example.com"})->size(), 1u);
  EXPECT_TRUE(data.store->ListMeetings({.home_pool = "pool2.example.com"})->empty());
}

TEST(ConferenceStoreTest, ContentIsStoredAndLoggedWithHashAndBase64) {
  DataStore data;
  ASSERT_TRUE(data.store->CreateMeeting(Meeting("0123456789abcdef")));
  std::string bytes("slides\0\xff\x01", 9);
  std::string sha(64, 'c');
  int64_t seq = data.LastSeq();
  auto put = data.store->PutContent({"0123456789abcdef", "deck v1.pdf", 0, sha}, bytes);
  ASSERT_TRUE(put) << put.error().message;
  EXPECT_EQ(put->size, 9);
  EXPECT_EQ(put->home_pool, "pool1.example.com");
  ChangeRecord change = OnlyChangeSince(data, seq);
  EXPECT_EQ(change.module, "conference");
  EXPECT_EQ(change.key, "content:0123456789abcdef/deck v1.pdf");
  json payload = json::parse(change.payload);
  EXPECT_EQ(payload["sha256"], sha);
  EXPECT_EQ(payload["size"], 9);
  EXPECT_EQ(payload["content_base64"], "c2xpZGVzAP8B");

  auto got = data.store->GetContent("0123456789abcdef", "deck v1.pdf");
  ASSERT_TRUE(got && got->has_value());
  EXPECT_EQ((*got)->bytes, bytes);
  EXPECT_EQ((*got)->info.sha256, sha);
  EXPECT_FALSE(data.store->GetContent("0123456789abcdef", "other.pdf")->has_value());

  ASSERT_TRUE(data.store->PutContent({"0123456789abcdef", "empty.txt", 0, sha}, ""));
  EXPECT_EQ(json::parse(data.store->ReadChanges(data.LastSeq() - 1, 1)->front().payload)["content_base64"], "");
  auto listed = data.store->ListContent("0123456789abcdef");
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[1].name, "empty.txt");
  EXPECT_EQ((*listed)[1].size, 0);
  EXPECT_EQ((*data.store->GetContent("0123456789abcdef", "empty.txt"))->bytes, "");

  size_t changes = data.ChangeCount();
  EXPECT_EQ(data.store->PutContent({"ffffffffffffffff", "a", 0, sha}, "x").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(data.store->PutContent({"0123456789abcdef", "../a", 0, sha}, "x").error().code,
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(data.store->PutContent({"0123456789abcdef", "a", 0, "xyz"}, "x").error().code,
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(data.store->ListContent("ffffffffffffffff").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(data.ChangeCount(), changes);
}

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

}  // namespace
}  // namespace tandem
