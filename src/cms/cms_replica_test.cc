#include "cms/cms_replica.h"

#include <filesystem>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/file_util.h"

namespace tandem {
namespace {

std::string TempDir() {
  std::string dir = (std::filesystem::temp_directory_path() / "tandem-cms-XXXXXX").string();
  TANDEM_CHECK(::mkdtemp(dir.data()) != nullptr);
  return dir;
}

CmsDocument ExampleDocument(int64_t version) {
  auto text = ReadFile(std::string(TANDEM_SOURCE_DIR) + "/examples/single-server.toml");
  TANDEM_CHECK(text.has_value());
  return CmsDocument{version, 1000 * version, "single-server.toml", *text};
}

TEST(CmsReplicaTest, StartsFromBootstrapWhenNoReplicaFile) {
  auto replica = CmsReplica::Open(TempDir() + "/replica.json", ExampleDocument(0));
  ASSERT_TRUE(replica) << replica.error().message;
  EXPECT_EQ((*replica)->Current().document->version, 0);
  EXPECT_EQ((*replica)->Current().topology->pools.size(), 1u);
}

TEST(CmsReplicaTest, InstalledVersionSurvivesRestart) {
  std::string path = TempDir() + "/replica.json";
  {
    auto replica = CmsReplica::Open(path, ExampleDocument(0));
    ASSERT_TRUE(replica);
    auto installed = (*replica)->Install(ExampleDocument(3));
    ASSERT_TRUE(installed && *installed);
    auto older = (*replica)->Install(ExampleDocument(2));
    ASSERT_TRUE(older);
    EXPECT_FALSE(*older) << "an older version must not replace a newer one";
  }
  auto reopened = CmsReplica::Open(path, ExampleDocument(0));
  ASSERT_TRUE(reopened);
  EXPECT_EQ((*reopened)->Current().document->version, 3);
}

TEST(CmsReplicaTest, InvalidTopologyIsRefusedAndChangesNothing) {
  std::string path = TempDir() + "/replica.json";
  auto replica = CmsReplica::Open(path, ExampleDocument(0));
  ASSERT_TRUE(replica);
  auto bad = (*replica)->Install(CmsDocument{5, 5000, "bad.toml", "this is = = not toml"});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kCorruption);
  EXPECT_EQ((*replica)->Current().document->version, 0);
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(CmsReplicaTest, CorruptReplicaFileIsAClearError) {
  std::string path = TempDir() + "/replica.json";
  ASSERT_TRUE(WriteFileAtomically(path, "{not json"));
  auto replica = CmsReplica::Open(path, ExampleDocument(0));
  ASSERT_FALSE(replica);
  EXPECT_NE(replica.error().message.find("corrupt"), std::string::npos);
}

TEST(CmsDocumentTest, OrderedByEpochThenVersion) {
  CmsDocument old_master{7, 0, "", "", "pool1", 1, 1};
  CmsDocument promoted{5, 0, "", "", "pool2", 2, 5};
  EXPECT_TRUE(promoted.IsNewerThan(old_master)) << "a higher epoch wins over a higher version";
  EXPECT_FALSE(old_master.IsNewerThan(promoted));
  CmsDocument next{6, 0, "", "", "pool2", 2, 5};
  EXPECT_TRUE(next.IsNewerThan(promoted));
  EXPECT_FALSE(promoted.IsNewerThan(promoted));
}

TEST(CmsDocumentTest, JsonRoundTripsMasterFieldsAndOldDocumentsGetDefaults) {
  CmsDocument document{4, 4000, "t.toml", "x", "pool2.example.com", 3, 4};
  auto parsed = CmsDocument::FromJson(document.ToJson());
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->master_pool, "pool2.example.com");
  EXPECT_EQ(parsed->master_epoch, 3);
  EXPECT_EQ(parsed->epoch_start_version, 4);

  auto old = CmsDocument::FromJson(R"({"version":2,"published_at_ms":5,"topology_file":"a","topology_toml":"b"})");
  ASSERT_TRUE(old) << old.error().message;
  EXPECT_EQ(old->master_pool, "");
  EXPECT_EQ(old->master_epoch, 1);
  EXPECT_EQ(old->epoch_start_version, 1);

  EXPECT_FALSE(CmsDocument::FromJson(
      R"({"version":2,"published_at_ms":5,"topology_file":"a","topology_toml":"b","master_epoch":"2"})"));
  EXPECT_FALSE(CmsDocument::FromJson(
      R"({"version":2,"published_at_ms":5,"topology_file":"a","topology_toml":"b","master_epoch":0})"));
}

TEST(CmsReplicaTest, OldReplicaFileGetsTheTopologysMasterAndEpochOne) {
  std::string path = TempDir() + "/replica.json";
  CmsDocument old = ExampleDocument(3);
  auto json = nlohmann::json::parse(old.ToJson());
  json.erase("master_pool");
  json.erase("master_epoch");
  json.erase("epoch_start_version");
  ASSERT_TRUE(WriteFileAtomically(path, json.dump()));
  auto replica = CmsReplica::Open(path, ExampleDocument(0));
  ASSERT_TRUE(replica) << replica.error().message;
  auto snapshot = (*replica)->Current();
  EXPECT_EQ(snapshot.document->version, 3);
  EXPECT_EQ(snapshot.document->master_epoch, 1);
  EXPECT_EQ(snapshot.master_pool(), snapshot.topology->cms_master_pool);
  EXPECT_TRUE(IsCmsMasterPool(snapshot, snapshot.topology->cms_master_pool));
}

TEST(CmsReplicaTest, InstallsAHigherEpochWithALowerVersionAndPersistsIt) {
  std::string path = TempDir() + "/replica.json";
  auto replica = CmsReplica::Open(path, ExampleDocument(0));
  ASSERT_TRUE(replica);
  ASSERT_TRUE(*(*replica)->Install(ExampleDocument(9)));
  CmsDocument promoted = ExampleDocument(6);
  promoted.master_pool = "elsewhere.example.com";
  promoted.master_epoch = 2;
  promoted.epoch_start_version = 6;
  auto installed = (*replica)->Install(promoted);
  ASSERT_TRUE(installed && *installed) << "a forced promotion may reuse a lower version number with a higher epoch";
  auto stale = (*replica)->Install(ExampleDocument(10));
  ASSERT_TRUE(stale);
  EXPECT_FALSE(*stale) << "a stale master's newer version number must not win over a higher epoch";
  auto reopened = CmsReplica::Open(path, ExampleDocument(0));
  ASSERT_TRUE(reopened);
  EXPECT_EQ((*reopened)->Current().document->version, 6);
  EXPECT_EQ((*reopened)->Current().master_pool(), "elsewhere.example.com");
  EXPECT_FALSE(IsCmsMasterPool((*reopened)->Current(), (*reopened)->Current().topology->cms_master_pool));
}

}  // namespace
}  // namespace tandem
