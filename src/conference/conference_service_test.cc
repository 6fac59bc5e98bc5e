#include "conference/conference_service.h"

#include <gtest/gtest.h>

#include "userdata/service_test_util.h"

namespace tandem {
namespace {

using nlohmann::json;
using testing::Body;
using testing::ChangeCount;
using testing::ErrorOf;
using testing::Request;

constexpr const char* kAlice = "sip:alice@example.com";

json NewMeetingBody() {
  return {{"organizer", kAlice},
          {"subject", "Quarterly review"},
          {"start_ms", 1800000000000},
          {"end_ms", 1800003600000},
          {"attendees", {"sip:bob@Example.com", "sip:carol@example.com"}}};
}

class ConferenceServiceTest : public ::testing::Test {
 protected:
  ConferenceServiceTest()
      : dir_(testing::TempDir()), store_(testing::TestStore(dir_)), replica_(testing::SingleServerReplica(dir_)) {}

  std::string Create(const json& body = NewMeetingBody()) {
    auto response = service_.CreateMeeting(Request("POST", "/meetings", {}, body.dump()));
    EXPECT_EQ(response.status, 201) << response.body;
    return Body(response).value("id", "");
  }

  std::string dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<CmsReplica> replica_;
  ConferenceService service_{testing::kToken, *replica_, *store_, testing::kPool1, /*resiliency=*/nullptr,
                             /*max_content_bytes=*/1024};
};

TEST_F(ConferenceServiceTest, MeetingLifecycle) {
  auto created = service_.CreateMeeting(Request("POST", "/meetings", {}, NewMeetingBody().dump()));
  ASSERT_EQ(created.status, 201) << created.body;
  json meeting = Body(created);
  std::string id = meeting["id"];
  EXPECT_EQ(id.size(), 16u);
  EXPECT_EQ(meeting["pin"].get<std::string>().size(), 6u);  // generated
  EXPECT_EQ(meeting["lobby"], "attendees-only");
  EXPECT_EQ(meeting["state"], "scheduled");
  EXPECT_EQ(meeting["home_pool"], testing::kPool1);
  EXPECT_EQ(meeting["attendees"][0], "sip:bob@example.com");  // normalized

  auto shown = service_.GetMeetings(Request("GET", "/meetings", {{"id", id}}));
  ASSERT_EQ(shown.status, 200) << shown.body;
  EXPECT_EQ(Body(shown)["subject"], "Quarterly review");
  EXPECT_EQ(Body(shown)["content"], json::array());

  auto updated = service_.UpdateMeeting(
      Request("PATCH", "/meetings", {{"id", id}}, R"({"subject":"Q3 review","lobby":"open","pin":"4321"})"));
  ASSERT_EQ(updated.status, 200) << updated.body;
  EXPECT_EQ(Body(updated)["subject"], "Q3 review");
  EXPECT_EQ(Body(updated)["pin"], "4321");
  EXPECT_EQ(Body(updated)["start_ms"], 1800000000000);  // kept

  // Moving the end before the (kept) start is refused by the merged check.
  auto backwards = service_.UpdateMeeting(Request("PATCH", "/meetings", {{"id", id}}, R"({"end_ms":5})"));
  EXPECT_EQ(backwards.status, 422) << backwards.body;

  auto cancelled = service_.CancelMeeting(Request("DELETE", "/meetings", {{"id", id}}));
  ASSERT_EQ(cancelled.status, 200);
  EXPECT_EQ(Body(cancelled)["state"], "cancelled");
  EXPECT_EQ(service_.CancelMeeting(Request("DELETE", "/meetings", {{"id", id}})).status, 409);
  EXPECT_EQ(service_.UpdateMeeting(Request("PATCH", "/meetings", {{"id", id}}, R"({"subject":"x"})")).status, 409);
}

TEST_F(ConferenceServiceTest, InvalidRequestsNameTheProblemAndWriteNothing) {
  std::string id = Create();
  size_t changes = ChangeCount(*store_);
  auto create = [&](const std::function<void(json&)>& edit) {
    json body = NewMeetingBody();
    edit(body);
    return service_.CreateMeeting(Request("POST", "/meetings", {}, body.dump()));
  };
  auto update = [&](std::map<std::string, std::string> query, std::string body) {
    return service_.UpdateMeeting(Request("PATCH", "/meetings", std::move(query), std::move(body)));
  };
  struct Case {
    HttpResponse response;
    int status;
    std::string mentions;
  };
  std::vector<Case> cases = {
      {service_.CreateMeeting(Request("POST", "/meetings", {}, "{\"organizer\":")), 400, "not valid JSON"},
      {create([](json& b) { b["room"] = "A"; }), 400, "unknown field 'room'"},
      {create([](json& b) { b.erase("subject"); }), 400, "field 'subject'"},
      {create([](json& b) { b["subject"] = ""; }), 422, "field 'subject'"},
      {create([](json& b) { b["organizer"] = "alice"; }), 422, "field 'organizer'"},
      {create([](json& b) { b["organizer"] = "sip:nobody@example.com"; }), 404, "sip:nobody@example.com"},
      {create([](json& b) { b["start_ms"] = "tomorrow"; }), 422, "field 'start_ms'"},
      {create([](json& b) { b["start_ms"] = -5; }), 422, "field 'start_ms'"},
      {create([](json& b) { b["end_ms"] = 1.5; }), 422, "field 'end_ms'"},
      {create([](json& b) { b["end_ms"] = b["start_ms"]; }), 422, "field 'end_ms' must be after"},
      {create([](json& b) { b["pin"] = "12ab"; }), 422, "field 'pin'"},
      {create([](json& b) { b["pin"] = 123456; }), 422, "field 'pin'"},
      {create([](json& b) { b["lobby"] = "closed"; }), 422, "field 'lobby'"},
      {create([](json& b) { b["attendees"] = {"bob"}; }), 422, "field 'attendees'[0]"},
      {create([](json& b) { b["attendees"] = json::array({"sip:" + std::string(600, 'x') + "@example.com"}); }), 422,
       "field 'attendees'[0]: an address of record must be at most 512 bytes"},
      {update({{"id", id}}, R"({"organizer":"sip:bob@example.com"})"), 422, "field 'organizer' cannot change"},
      {update({{"id", id}}, "{}"), 400, "nothing to change"},
      {update({{"id", "xyz"}}, R"({"subject":"a"})"), 422, "query parameter 'id'"},
      {update({}, R"({"subject":"a"})"), 400, "query parameter 'id'"},
      {update({{"id", "ffffffffffffffff"}}, R"({"subject":"a"})"), 404, "ffffffffffffffff"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    EXPECT_EQ(c.response.status, c.status) << "case " << i << ": " << c.response.body;
    EXPECT_NE(ErrorOf(c.response).find(c.mentions), std::string::npos) << "case " << i << ": " << c.response.body;
  }
  EXPECT_EQ(ChangeCount(*store_), changes);
  EXPECT_EQ(store_->ListMeetings({})->size(), 1u);
}

TEST_F(ConferenceServiceTest, ListsByOrganizerAndByPool) {
  Create();
  json bobs = NewMeetingBody();
  bobs["organizer"] = "sip:bob@example.com";
  bobs["pin"] = "987654";
  Create(bobs);
  auto alice = service_.GetMeetings(Request("GET", "/meetings", {{"organizer", kAlice}}));
  ASSERT_EQ(alice.status, 200) << alice.body;
  EXPECT_EQ(Body(alice)["meetings"].size(), 1u);
  auto all = service_.GetMeetings(Request("GET", "/meetings"));
  ASSERT_EQ(all.status, 200);
  EXPECT_EQ(Body(all)["meetings"].size(), 2u);
  EXPECT_EQ(Body(all)["unreachable_pools"], json::array());
  EXPECT_EQ(service_.GetMeetings(Request("GET", "/meetings", {{"pool", "nowhere.example.com"}})).status, 422);
  auto nobody = service_.GetMeetings(Request("GET", "/meetings", {{"organizer", "sip:nobody@example.com"}}));
  EXPECT_EQ(nobody.status, 404);
}

TEST_F(ConferenceServiceTest, ContentUploadDownloadAndLimits) {
  std::string id = Create();
  std::string bytes("PK\x03\x04\0binary\xff", 12);
  auto uploaded = service_.PutContent(Request("POST", "/meetings/content", {{"id", id}, {"name", "deck.pptx"}}, bytes));
  ASSERT_EQ(uploaded.status, 201) << uploaded.body;
  EXPECT_EQ(Body(uploaded)["size"], 12);
  EXPECT_EQ(Body(uploaded)["sha256"], Sha256Hex(bytes));

  auto downloaded = service_.GetContent(Request("GET", "/meetings/content", {{"id", id}, {"name", "deck.pptx"}}));
  ASSERT_EQ(downloaded.status, 200);
  EXPECT_EQ(downloaded.content_type, "application/octet-stream");
  EXPECT_EQ(downloaded.body, bytes);
  auto listed = service_.GetContent(Request("GET", "/meetings/content", {{"id", id}}));
  ASSERT_EQ(listed.status, 200);
  EXPECT_EQ(Body(listed)["content"][0]["name"], "deck.pptx");
  EXPECT_EQ(Body(service_.GetMeetings(Request("GET", "/meetings", {{"id", id}})))["content"].size(), 1u);

  size_t changes = ChangeCount(*store_);
  auto too_big = service_.PutContent(
      Request("POST", "/meetings/content", {{"id", id}, {"name", "big.bin"}}, std::string(1025, 'x')));
  EXPECT_EQ(too_big.status, 413);
  EXPECT_NE(ErrorOf(too_big).find("1024"), std::string::npos) << too_big.body;
  EXPECT_EQ(service_.PutContent(Request("POST", "/meetings/content", {{"id", id}, {"name", "../etc"}}, "x")).status, 422);
  EXPECT_EQ(service_.PutContent(Request("POST", "/meetings/content", {{"id", id}}, "x")).status, 400);
  EXPECT_EQ(
      service_.PutContent(Request("POST", "/meetings/content", {{"id", "ffffffffffffffff"}, {"name", "a"}}, "x")).status,
      404);
  auto missing = service_.GetContent(Request("GET", "/meetings/content", {{"id", id}, {"name", "other.pdf"}}));
  EXPECT_EQ(missing.status, 404);
  EXPECT_NE(ErrorOf(missing).find("no content named 'other.pdf'"), std::string::npos);
  EXPECT_EQ(ChangeCount(*store_), changes);
}

TEST(ConferenceForwardingTest, MeetingHomedInAnotherPoolIsServedThere) {
  std::string dir = testing::TempDir();
  auto store = testing::TestStore(dir);
  // A copy of a pool2 meeting, as the Backup Service would have brought it here.
  ASSERT_TRUE(store->AddUsers({testing::TestUser("carol", testing::kPool2)}));
  MeetingRecord copy;
  copy.id = "00000000000000c0";
  copy.organizer = "sip:carol@example.com";
  copy.subject = "pool2 meeting";
  copy.start_ms = 1;
  copy.end_ms = 2;
  copy.pin = "1234";
  ASSERT_TRUE(store->CreateMeeting(copy));
  testing::FakePool pool2({{"POST", "/meetings/content"}, {"GET", "/meetings"}, {"POST", "/meetings"}},
                          [](const HttpRequest& request) {
                            return HttpResponse::Json(200, json{{"answered_by", "pool2"}, {"meetings", json::array()},
                                                                {"body_size", request.body.size()}}
                                                               .dump());
                          });
  auto replica = testing::TwoSitesReplica(dir, pool2.port());
  ConferenceService service(testing::kToken, *replica, *store, testing::kPool1);

  std::string bytes("\0\1\2\3 slides", 11);
  auto upload = service.PutContent(
      Request("POST", "/meetings/content", {{"id", "00000000000000c0"}, {"name", "a.pdf"}}, bytes));
  EXPECT_EQ(Body(upload)["answered_by"], "pool2") << upload.body;
  auto create_for_carol = NewMeetingBody();
  create_for_carol["organizer"] = "sip:carol@example.com";
  EXPECT_EQ(Body(service.CreateMeeting(Request("POST", "/meetings", {}, create_for_carol.dump())))["answered_by"],
            "pool2");
  auto seen = pool2.requests();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].body, bytes);
  EXPECT_EQ(seen[0].query.at("pool"), testing::kPool2);
  EXPECT_TRUE(store->ListContent("00000000000000c0")->empty()) << "nothing written here";
  EXPECT_EQ(store->ListMeetings({.organizer = "sip:carol@example.com"})->size(), 1u);

  // Listing every pool: pool1's own meetings plus what pool2 answers; the pool2
  // meeting copied here is not listed twice.
  auto all = service.GetMeetings(Request("GET", "/meetings"));
  ASSERT_EQ(all.status, 200);
  EXPECT_EQ(Body(all)["meetings"].size(), 0u);
  EXPECT_EQ(Body(all)["unreachable_pools"], json::array());
}

TEST(ConferenceHelpersTest, IdsPinsAndHashes) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  std::string id = NewMeetingId();
  EXPECT_EQ(id.size(), 16u);
  EXPECT_NE(id, NewMeetingId());
  std::string pin = NewDialInPin(6);
  EXPECT_EQ(pin.size(), 6u);
  EXPECT_TRUE(std::all_of(pin.begin(), pin.end(), [](char c) { return c >= '0' && c <= '9'; }));
}

}  // namespace
}  // namespace tandem
