#include <gtest/gtest.h>

#include "presence/pidf.h"
#include "presence/publication_store.h"

namespace tandem {
namespace {

TEST(PidfTest, ReadsBasicAndNoteWhateverThePrefix) {
  auto plain = ParsePidf(R"(<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@x">
      <tuple id="t1"><status><basic>open</basic></status><note>In a &amp; b</note></tuple></presence>)");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->basic, BasicStatus::kOpen);
  EXPECT_EQ(plain->note, "In a & b");
  auto prefixed = ParsePidf(R"(<p:presence xmlns:p="urn:ietf:params:xml:ns:pidf"><p:tuple id="x">
      <p:status><p:basic> CLOSED </p:basic></p:status></p:tuple></p:presence>)");
  ASSERT_TRUE(prefixed);
  EXPECT_EQ(prefixed->basic, BasicStatus::kClosed);
  EXPECT_FALSE(ParsePidf("<presence><tuple/></presence>"));
  EXPECT_FALSE(ParsePidf("<<<"));
  EXPECT_FALSE(ParsePidf(""));
}

TEST(PidfTest, BuildsADocumentItCanReadBack) {
  std::string document = BuildPidf("sip:alice@example.com", {BasicStatus::kOpen, "at <lunch>"});
  EXPECT_NE(document.find("entity=\"sip:alice@example.com\""), std::string::npos);
  auto read = ParsePidf(document);
  ASSERT_TRUE(read);
  EXPECT_EQ(read->basic, BasicStatus::kOpen);
  EXPECT_EQ(read->note, "at <lunch>");
}

constexpr char kAlice[] = "sip:alice@example.com";

TEST(PublicationStoreTest, InitialRefreshModifyRemove) {
  PublicationStore store;
  auto created = store.Publish(kAlice, {std::nullopt, PresenceState{BasicStatus::kOpen, ""}, 60}, 0);
  ASSERT_EQ(created.status, 200);
  EXPECT_TRUE(created.composition_changed);
  EXPECT_FALSE(created.etag.empty());

  auto refreshed = store.Publish(kAlice, {created.etag, std::nullopt, 60}, 1000);
  ASSERT_EQ(refreshed.status, 200);
  EXPECT_NE(refreshed.etag, created.etag);
  EXPECT_FALSE(refreshed.composition_changed);
  EXPECT_EQ(store.Publish(kAlice, {created.etag, std::nullopt, 60}, 1000).status, 412) << "old tag is gone";

  auto modified = store.Publish(kAlice, {refreshed.etag, PresenceState{BasicStatus::kClosed, "away"}, 60}, 2000);
  ASSERT_EQ(modified.status, 200);
  EXPECT_TRUE(modified.composition_changed);
  EXPECT_EQ(store.Compose(kAlice, 2000)->basic, BasicStatus::kClosed);

  auto removed = store.Publish(kAlice, {modified.etag, std::nullopt, 0}, 3000);
  ASSERT_EQ(removed.status, 200);
  EXPECT_FALSE(store.Compose(kAlice, 3000).has_value());
  EXPECT_EQ(store.publication_count(), 0u);
}

TEST(PublicationStoreTest, MostAvailableDeviceWins) {
  PublicationStore store;
  store.Publish(kAlice, {std::nullopt, PresenceState{BasicStatus::kClosed, "desk phone off"}, 60}, 0);
  auto laptop = store.Publish(kAlice, {std::nullopt, PresenceState{BasicStatus::kOpen, "on laptop"}, 30}, 1000);
  auto composed = store.Compose(kAlice, 2000);
  ASSERT_TRUE(composed);
  EXPECT_EQ(composed->basic, BasicStatus::kOpen);
  EXPECT_EQ(composed->note, "on laptop");
  // The laptop's publication expires: the desk phone's closed state remains.
  auto changed = store.SweepExpired(31000);
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_EQ(changed[0], kAlice);
  EXPECT_EQ(store.Compose(kAlice, 31000)->basic, BasicStatus::kClosed);
}

TEST(PublicationStoreTest, InitialPublishNeedsABody) {
  PublicationStore store;
  EXPECT_EQ(store.Publish(kAlice, {std::nullopt, std::nullopt, 60}, 0).status, 400);
  EXPECT_EQ(store.Publish(kAlice, {"nonexistent", std::nullopt, 60}, 0).status, 412);
}

}  // namespace
}  // namespace tandem
