#include "users/user_service.h"

#include <gtest/gtest.h>

#include "auth/digest.h"

namespace tandem {
namespace {

TEST(AddressOfRecordTest, ParsesAndNormalizesTheDomain) {
  auto aor = ParseAddressOfRecord("sip:alice@Example.COM");
  ASSERT_TRUE(aor);
  EXPECT_EQ(aor->user, "alice");
  EXPECT_EQ(aor->domain, "example.com");
  EXPECT_EQ(aor->Uri(), "sip:alice@example.com");
}

TEST(AddressOfRecordTest, RejectsWhatIsNotAnAddressOfRecord) {
  for (const char* bad : {"alice@example.com", "sip:example.com", "sip:@example.com", "sip:al ice@example.com",
                          "sip:alice@exa_mple.com", "sip:alice@", "tel:+123"}) {
    EXPECT_FALSE(ParseAddressOfRecord(bad)) << bad;
  }
}

TEST(MakeUserRecordTest, ComputesHa1ForShortAndFullDigestUsernames) {
  auto user = MakeUserRecord("sip:alice@example.com", "pool1.example.com", "secret");
  ASSERT_TRUE(user);
  EXPECT_EQ(user->ha1_md5, *ComputeHa1("alice", "example.com", "secret", DigestAlgorithm::kMd5));
  EXPECT_EQ(user->ha1_sha256_full, *ComputeHa1("alice@example.com", "example.com", "secret", DigestAlgorithm::kSha256));
  EXPECT_EQ(user->ha1_md5.size(), 32u);
  EXPECT_EQ(user->ha1_sha256.size(), 64u);
  EXPECT_FALSE(MakeUserRecord("sip:alice@example.com", "pool1.example.com", ""));
}

}  // namespace
}  // namespace tandem
