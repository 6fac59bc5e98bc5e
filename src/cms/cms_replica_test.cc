#include "cms/cms_replica.h"

#include <filesystem>

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace tandem
