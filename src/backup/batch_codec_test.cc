#include "backup/batch_codec.h"

#include <gtest/gtest.h>

#include "backup/pairing.h"

namespace tandem {
namespace {

std::vector<ChangeRecord> SampleChanges() {
  return {{7, 1700000000000, "user", "pool1.example.com", "sip:alice@example.com#note", "upsert", R"({"note":"hi"})"},
          {9, 1700000000001, "user", "pool1.example.com", "sip:alice@example.com#contact:sip:bob@example.com",
           "delete", ""}};
}

TEST(BatchCodecTest, ChangesRoundTrip) {
  EncodedBody body = EncodeChanges(SampleChanges());
  auto decoded = DecodeChanges(body.compressed, body.sha256, 1 << 20);
  ASSERT_TRUE(decoded) << decoded.error().message;
  ASSERT_EQ(decoded->size(), 2u);
  EXPECT_EQ((*decoded)[0].seq, 7);
  EXPECT_EQ((*decoded)[0].payload, R"({"note":"hi"})");
  EXPECT_EQ((*decoded)[1].op, "delete");
  EXPECT_EQ((*decoded)[1].key, "sip:alice@example.com#contact:sip:bob@example.com");
}

TEST(BatchCodecTest, SnapshotChunkTravelsAsItIs) {
  const std::string chunk = R"([["users","sip:a@example.com","a"],["contacts","x"]])";
  EncodedBody body = EncodeSnapshotChunk(chunk);
  auto decoded = DecodeSnapshotChunk(body.compressed, body.sha256, 1 << 20);
  ASSERT_TRUE(decoded) << decoded.error().message;
  EXPECT_EQ(*decoded, chunk);
  std::string corrupted = body.compressed;
  corrupted.back() ^= 0x01;
  EXPECT_EQ(DecodeSnapshotChunk(corrupted, body.sha256, 1 << 20).error().code, ErrorCode::kCorruption);
}

TEST(BatchCodecTest, CorruptedBodyIsRejected) {
  EncodedBody body = EncodeChanges(SampleChanges());
  for (size_t i = 0; i < body.compressed.size(); ++i) {
    std::string corrupted = body.compressed;
    corrupted[i] ^= 0x20;
    auto decoded = DecodeChanges(corrupted, body.sha256, 1 << 20);
    ASSERT_FALSE(decoded) << "flipping byte " << i << " went unnoticed";
    EXPECT_EQ(decoded.error().code, ErrorCode::kCorruption);
  }
}

TEST(BatchCodecTest, WrongChecksumIsRejected) {
  EncodedBody body = EncodeChanges(SampleChanges());
  EncodedBody other = EncodeChanges({});
  auto decoded = DecodeChanges(body.compressed, other.sha256, 1 << 20);
  ASSERT_FALSE(decoded);
  EXPECT_NE(decoded.error().message.find("checksum"), std::string::npos);
}

TEST(BatchCodecTest, OversizedBatchIsRejectedBeforeDecompressing) {
  EncodedBody body = EncodeSnapshotChunk(std::string(100000, 'x'));
  auto decoded = DecodeSnapshotChunk(body.compressed, body.sha256, 1000);
  ASSERT_FALSE(decoded);
  EXPECT_EQ(decoded.error().code, ErrorCode::kCorruption);
}

TEST(BatchCodecTest, MalformedJsonWithValidChecksumIsRejected) {
  // A sender with the secret but a bug: well-framed, wrong shape.
  EncodedBody body = EncodeSnapshotChunk(R"([["k", "", "p"]])");
  auto decoded = DecodeChanges(body.compressed, body.sha256, 1 << 20);
  ASSERT_FALSE(decoded);
  EXPECT_EQ(decoded.error().code, ErrorCode::kCorruption);
}

TEST(BatchCodecTest, SignatureCoversPathAndEveryParameter) {
  BatchParams params{{"source", "pool1.example.com"}, {"module", "user"}, {"sha256", "abc"}};
  SignParams("secret", "/backup/apply", params);
  EXPECT_TRUE(VerifyParams("secret", "/backup/apply", params));
  EXPECT_FALSE(VerifyParams("other secret", "/backup/apply", params));
  EXPECT_FALSE(VerifyParams("secret", "/backup/snapshot", params));
  BatchParams tampered = params;
  tampered["sha256"] = "abd";
  EXPECT_FALSE(VerifyParams("secret", "/backup/apply", tampered));
  BatchParams unsigned_params = params;
  unsigned_params.erase("sig");
  EXPECT_FALSE(VerifyParams("secret", "/backup/apply", unsigned_params));
}

TEST(BatchCodecTest, PathWithQueryEncodesValues) {
  EXPECT_EQ(PathWithQuery("/backup/keys", {{"from", "sip:a@x#note"}, {"to", ""}}),
            "/backup/keys?from=sip%3Aa%40x%23note&to=");
}

TEST(PairingTest, SecretPathIsTheSameFromBothSides) {
  EXPECT_EQ(PairingSecretPath("/d", "pool1.example.com", "pool2.example.com"),
            PairingSecretPath("/d", "pool2.example.com", "pool1.example.com"));
}

}  // namespace
}  // namespace tandem
