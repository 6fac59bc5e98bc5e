#include "userdata/user_data_service.h"

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

class UserDataServiceTest : public ::testing::Test {
 protected:
  UserDataServiceTest() : dir_(testing::TempDir()), store_(testing::TestStore(dir_)), replica_(testing::SingleServerReplica(dir_)) {
    service_.SetPresenceChangeHook([this](const std::string& user) { presence_changes_.push_back(user); });
  }

  HttpResponse Post(HttpResponse (UserDataService::*handler)(const HttpRequest&), const std::string& path,
                    std::map<std::string, std::string> query, const json& body) {
    return (service_.*handler)(Request("POST", path, std::move(query), body.dump()));
  }

  std::string dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<CmsReplica> replica_;
  UserDataService service_{testing::kToken, *replica_, *store_, testing::kPool1};
  std::vector<std::string> presence_changes_;
};

TEST_F(UserDataServiceTest, ContactsAndGroupsRoundTrip) {
  auto group = Post(&UserDataService::AddGroup, "/users/groups", {{"user", kAlice}}, {{"name", "Friends"}});
  ASSERT_EQ(group.status, 200) << group.body;
  // The user's URI is normalized (domain case), the contact's too.
  auto added = Post(&UserDataService::UpsertContact, "/users/contacts", {{"user", "sip:alice@EXAMPLE.com"}},
                    {{"contact", "sip:bob@Example.COM"}, {"name", "Bob"}, {"groups", {"Friends"}}});
  ASSERT_EQ(added.status, 200) << added.body;
  EXPECT_EQ(Body(added)["contact"], "sip:bob@example.com");
  EXPECT_EQ(presence_changes_, std::vector<std::string>{kAlice});

  auto listed = service_.ListContacts(Request("GET", "/users/contacts", {{"user", kAlice}}));
  ASSERT_EQ(listed.status, 200);
  json contacts = Body(listed)["contacts"];
  ASSERT_EQ(contacts.size(), 1u);
  EXPECT_EQ(contacts[0]["contact"], "sip:bob@example.com");
  EXPECT_EQ(contacts[0]["display_name"], "Bob");
  EXPECT_EQ(contacts[0]["groups"], json::array({"Friends"}));

  auto groups = service_.ListGroups(Request("GET", "/users/groups", {{"user", kAlice}}));
  ASSERT_EQ(groups.status, 200);
  EXPECT_EQ(Body(groups)["groups"][0]["name"], "Friends");

  // The group is in use: 409 with a message saying what to do.
  auto in_use = service_.RemoveGroup(Request("DELETE", "/users/groups", {{"user", kAlice}, {"name", "Friends"}}));
  EXPECT_EQ(in_use.status, 409);
  EXPECT_NE(ErrorOf(in_use).find("still holds 1 contact"), std::string::npos) << in_use.body;

  auto removed = service_.RemoveContact(
      Request("DELETE", "/users/contacts", {{"user", kAlice}, {"contact", "sip:bob@example.com"}}));
  EXPECT_EQ(removed.status, 200) << removed.body;
  EXPECT_EQ(presence_changes_.size(), 2u);
  auto again = service_.RemoveContact(
      Request("DELETE", "/users/contacts", {{"user", kAlice}, {"contact", "sip:bob@example.com"}}));
  EXPECT_EQ(again.status, 404);
  EXPECT_EQ(service_.RemoveGroup(Request("DELETE", "/users/groups", {{"user", kAlice}, {"name", "Friends"}})).status,
            200);
}

TEST_F(UserDataServiceTest, InvalidRequestsNameTheProblemAndWriteNothing) {
  size_t changes = ChangeCount(*store_);
  struct Case {
    HttpResponse response;
    int status;
    std::string mentions;
  };
  auto contact = [&](std::map<std::string, std::string> query, std::string body) {
    return service_.UpsertContact(Request("POST", "/users/contacts", std::move(query), std::move(body)));
  };
  auto privacy = [&](std::string body) {
    return service_.UpdatePrivacy(Request("POST", "/users/privacy", {{"user", kAlice}}, std::move(body)));
  };
  std::vector<Case> cases = {
      {contact({{"user", kAlice}}, "{not json"), 400, "not valid JSON"},
      {contact({{"user", kAlice}}, "[1]"), 400, "JSON object"},
      {contact({{"user", kAlice}}, R"({"contact":"sip:bob@example.com","nick":"b"})"), 400, "unknown field 'nick'"},
      {contact({{"user", kAlice}}, R"({"name":"Bob"})"), 400, "field 'contact'"},
      {contact({{"user", kAlice}}, R"({"contact":"bob@example.com"})"), 422, "field 'contact'"},
      {contact({{"user", kAlice}}, R"({"contact":42})"), 422, "field 'contact'"},
      {contact({}, R"({"contact":"sip:bob@example.com"})"), 400, "query parameter 'user'"},
      {contact({{"user", "alice"}}, R"({"contact":"sip:bob@example.com"})"), 422, "query parameter 'user'"},
      {contact({{"user", "sip:\xff@example.com"}}, R"({"contact":"sip:bob@example.com"})"), 400, "'user'"},
      {contact({{"user", kAlice}}, R"({"contact":"sip:bob@example.com","name":")" + std::string(300, 'x') + "\"}"), 422,
       "field 'name'"},
      {contact({{"user", kAlice}}, R"({"contact":"sip:bob@example.com","groups":"Friends"})"), 422, "field 'groups'"},
      {contact({{"user", kAlice}}, R"({"contact":"sip:bob@example.com","groups":["ok","bad\u0001"]})"), 422,
       "field 'groups'[1]"},
      {contact({{"user", kAlice}}, R"({"contact":"sip:alice@example.com"})"), 422, "itself"},
      {contact({{"user", kAlice}}, R"({"contact":"sip:bob@example.com","groups":["Nope"]})"), 409, "'Nope'"},
      {privacy(R"({"policy":"friends-only"})"), 422, "field 'policy'"},
      {privacy(R"({"allow":["example.com","not a domain"]})"), 422, "field 'allow'[1]"},
      {privacy(R"({"block":[7]})"), 422, "field 'block'[0]"},
      {privacy("{}"), 400, "nothing to change"},
      {service_.AddGroup(Request("POST", "/users/groups", {{"user", kAlice}}, R"({"name":""})")), 422, "field 'name'"},
      {service_.SetNote(Request("POST", "/users/note", {{"user", kAlice}}, R"({"note":")" + std::string(3000, 'n') + "\"}")),
       422, "field 'note'"},
      {service_.SetNote(Request("POST", "/users/note", {{"user", kAlice}}, "{}")), 400, "field 'note'"},
      {service_.RemoveContact(Request("DELETE", "/users/contacts", {{"user", kAlice}})), 400,
       "query parameter 'contact'"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    EXPECT_EQ(c.response.status, c.status) << "case " << i << ": " << c.response.body;
    EXPECT_NE(ErrorOf(c.response).find(c.mentions), std::string::npos) << "case " << i << ": " << c.response.body;
  }
  EXPECT_EQ(ChangeCount(*store_), changes);
  EXPECT_TRUE(presence_changes_.empty());
}

TEST_F(UserDataServiceTest, UnknownUserIsNotFoundInAnyPool) {
  auto response = service_.ListContacts(Request("GET", "/users/contacts", {{"user", "sip:nobody@example.com"}}));
  EXPECT_EQ(response.status, 404);
  EXPECT_NE(ErrorOf(response).find("not provisioned in any pool"), std::string::npos) << response.body;
  // Asked for this pool only (as a forwarding pool does): marked so the asker moves on.
  auto here = service_.ListContacts(
      Request("GET", "/users/contacts", {{"user", "sip:nobody@example.com"}, {"pool", testing::kPool1}}));
  EXPECT_TRUE(HomePoolRouter::IsNotHomedHere(here)) << here.body;
  auto elsewhere = service_.ListContacts(Request("GET", "/users/contacts", {{"user", kAlice}, {"pool", "nowhere.example.com"}}));
  EXPECT_EQ(elsewhere.status, 422);
}

TEST_F(UserDataServiceTest, NoteAndPrivacy) {
  auto set = Post(&UserDataService::SetNote, "/users/note", {{"user", kAlice}}, {{"note", "Back at 3pm\nCall me"}});
  ASSERT_EQ(set.status, 200) << set.body;
  auto got = service_.GetNote(Request("GET", "/users/note", {{"user", kAlice}}));
  EXPECT_EQ(Body(got)["note"], "Back at 3pm\nCall me");
  EXPECT_GT(Body(got)["updated_at_ms"].get<int64_t>(), 0);
  EXPECT_EQ(service_.ClearNote(Request("DELETE", "/users/note", {{"user", kAlice}})).status, 200);
  EXPECT_EQ(Body(service_.GetNote(Request("GET", "/users/note", {{"user", kAlice}})))["note"], "");

  auto defaults = service_.GetPrivacy(Request("GET", "/users/privacy", {{"user", kAlice}}));
  ASSERT_EQ(defaults.status, 200);
  EXPECT_EQ(Body(defaults)["policy"], "allow-contacts");
  auto updated = Post(&UserDataService::UpdatePrivacy, "/users/privacy", {{"user", kAlice}},
                      {{"allow", {"sip:carol@Example.com", "Partner.EXAMPLE.org", "partner.example.org"}},
                       {"block", {"spam.example.net"}}});
  ASSERT_EQ(updated.status, 200) << updated.body;
  EXPECT_EQ(Body(updated)["allow"], json::array({"sip:carol@example.com", "partner.example.org"}));
  EXPECT_EQ(Body(updated)["policy"], "allow-contacts");
  auto policy_only = Post(&UserDataService::UpdatePrivacy, "/users/privacy", {{"user", kAlice}}, {{"policy", "allow-listed"}});
  EXPECT_EQ(Body(policy_only)["policy"], "allow-listed");
  EXPECT_EQ(Body(policy_only)["block"], json::array({"spam.example.net"}));  // kept

  auto presence = store_->GetPresencePolicy(kAlice);
  ASSERT_TRUE(presence);
  EXPECT_TRUE(presence->Allows("sip:dave@partner.example.org"));
  EXPECT_FALSE(presence->Allows("sip:bob@example.com"));
  EXPECT_EQ(presence_changes_.size(), 4u);  // note set, note cleared, privacy twice
}

// ---- Forwarding to the home pool ----------------------------------------------------

TEST(UserDataForwardingTest, UserHomedInAnotherPoolIsForwardedThere) {
  std::string dir = testing::TempDir();
  auto store = testing::TestStore(dir);
  // carol's row is here (copied by the Backup Service) but she is homed in pool2.
  ASSERT_TRUE(store->AddUsers({testing::TestUser("carol", testing::kPool2)}));
  testing::FakePool pool2({{"POST", "/users/contacts"}, {"GET", "/users/contacts"}}, [](const HttpRequest& request) {
    if (request.query.count("user") && request.query.at("user") == "sip:dave@example.com") {
      return HomePoolRouter::NotHomedHere("user sip:dave@example.com is not provisioned in pool pool2.example.com");
    }
    return HttpResponse::Json(200, R"({"answered_by":"pool2"})");
  });
  auto replica = testing::TwoSitesReplica(dir, pool2.port());
  int hook_calls = 0;
  UserDataService service(testing::kToken, *replica, *store, testing::kPool1);
  service.SetPresenceChangeHook([&](const std::string&) { ++hook_calls; });

  std::string body = R"({"contact":"sip:alice@example.com"})";
  auto response = service.UpsertContact(Request("POST", "/users/contacts", {{"user", "sip:carol@example.com"}}, body));
  EXPECT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(Body(response)["answered_by"], "pool2");
  auto seen = pool2.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].query.at("pool"), testing::kPool2);  // pool2 answers for itself only
  EXPECT_EQ(seen[0].query.at("user"), "sip:carol@example.com");
  EXPECT_EQ(seen[0].body, body);
  EXPECT_EQ(hook_calls, 0) << "the hook runs in the pool that made the change";
  EXPECT_TRUE(store->ListContacts("sip:carol@example.com")->empty()) << "nothing written here";

  // Unknown here: the other pools are asked.
  auto unknown = service.ListContacts(Request("GET", "/users/contacts", {{"user", "sip:erin@example.com"}}));
  EXPECT_EQ(Body(unknown)["answered_by"], "pool2");
  // Unknown everywhere.
  auto nowhere = service.ListContacts(Request("GET", "/users/contacts", {{"user", "sip:dave@example.com"}}));
  EXPECT_EQ(nowhere.status, 404);
  EXPECT_NE(ErrorOf(nowhere).find("in any pool"), std::string::npos);
}

TEST(UserDataForwardingTest, UnreachableHomePoolIs503NamingIt) {
  std::string dir = testing::TempDir();
  auto store = testing::TestStore(dir);
  auto replica = testing::TwoSitesReplica(dir, std::nullopt);
  UserDataService service(testing::kToken, *replica, *store, testing::kPool1);
  auto response = service.ListContacts(Request("GET", "/users/contacts", {{"user", "sip:erin@example.com"}}));
  EXPECT_EQ(response.status, 503);
  EXPECT_NE(ErrorOf(response).find(testing::kPool2), std::string::npos) << response.body;
  // Local users are still served while the other pool is down.
  EXPECT_EQ(service.ListContacts(Request("GET", "/users/contacts", {{"user", kAlice}})).status, 200);
}

}  // namespace
}  // namespace tandem
