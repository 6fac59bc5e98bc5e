#include "common/file_util.h"

#include <sys/stat.h>

#include <filesystem>

#include <gtest/gtest.h>

namespace tandem {
namespace {

std::string TempDir() {
  std::string dir = (std::filesystem::temp_directory_path() / "tandem-file-util-XXXXXX").string();
  TANDEM_CHECK(::mkdtemp(dir.data()) != nullptr);
  return dir;
}

TEST(FileUtilTest, WriteThenReadRoundTrips) {
  std::string path = TempDir() + "/a.txt";
  ASSERT_TRUE(WriteFileAtomically(path, "hello\n"));
  auto read = ReadFile(path);
  ASSERT_TRUE(read) << read.error().message;
  EXPECT_EQ(*read, "hello\n");
}

TEST(FileUtilTest, SecretFilesGetOwnerOnlyMode) {
  std::string path = TempDir() + "/token";
  ASSERT_TRUE(WriteFileAtomically(path, "s3cret", 0600));
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(FileUtilTest, MissingFileIsNotFound) {
  auto read = ReadFile(TempDir() + "/missing");
  ASSERT_FALSE(read);
  EXPECT_EQ(read.error().code, ErrorCode::kNotFound);
}

}  // namespace
}  // namespace tandem
