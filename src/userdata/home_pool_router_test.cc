#include "userdata/home_pool_router.h"

#include <gtest/gtest.h>

#include "userdata/service_test_util.h"

namespace tandem {
namespace {

using nlohmann::json;

TEST(RequestHelpersTest, ParseJsonObjectRefusesUnknownFields) {
  EXPECT_TRUE(ParseJsonObject(R"({"a":1})", {"a", "b"}));
  auto unknown = ParseJsonObject(R"({"a":1,"c":2})", {"a", "b"});
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().status, 400);
  EXPECT_NE(unknown.error().body.find("unknown field 'c'"), std::string::npos);
  EXPECT_FALSE(ParseJsonObject("", {}));
  EXPECT_FALSE(ParseJsonObject("\"text\"", {}));
}

TEST(RequestHelpersTest, ErrorsNeverThrowOnInvalidUtf8) {
  HttpResponse response = ApiError(422, "bad \xff\xfe input");
  EXPECT_EQ(response.status, 422);
  EXPECT_TRUE(json::parse(response.body, nullptr, false).is_object());
  auto aor = AddressOfRecordParameter("field 'x'", "sip:\xff@example.com");
  ASSERT_FALSE(aor);
  EXPECT_EQ(aor.error().status, 422);
}

TEST(RequestHelpersTest, StatusForStoreErrors) {
  EXPECT_EQ(HttpStatusFor({ErrorCode::kInvalidArgument, ""}), 422);
  EXPECT_EQ(HttpStatusFor({ErrorCode::kNotFound, ""}), 404);
  EXPECT_EQ(HttpStatusFor({ErrorCode::kAlreadyExists, ""}), 409);
  EXPECT_EQ(HttpStatusFor({ErrorCode::kFailedPrecondition, ""}), 409);
  EXPECT_EQ(HttpStatusFor({ErrorCode::kIoError, ""}), 500);
}

TEST(RequestHelpersTest, StringListFieldNamesTheIndex) {
  json body = json::parse(R"({"l":["a","",3]})");
  auto non_empty = [](std::string_view s) -> Result<std::string> {
    if (s.empty()) return MakeError(ErrorCode::kInvalidArgument, "empty");
    return std::string(s);
  };
  auto list = OptionalStringListField(body, "l", 10, non_empty);
  ASSERT_FALSE(list);
  EXPECT_NE(list.error().body.find("field 'l'[1]: empty"), std::string::npos) << list.error().body;
  auto absent = OptionalStringListField(body, "missing", 10, non_empty);
  ASSERT_TRUE(absent);
  EXPECT_FALSE(absent->has_value());
  auto too_many = OptionalStringListField(json::parse(R"({"l":["a","b"]})"), "l", 1, non_empty);
  ASSERT_FALSE(too_many);
}

TEST(HomePoolRouterTest, ForwardedRequestsNameTheTargetPoolAndKeepTheQuery) {
  std::string dir = testing::TempDir();
  testing::FakePool pool2({{"GET", "/x"}}, [](const HttpRequest&) { return HttpResponse::Json(200, "{}"); });
  auto replica = testing::TwoSitesReplica(dir, pool2.port());
  HomePoolRouter router(testing::kToken, *replica, testing::kPool1);
  bool served_here = false;
  auto serve_here = [&] {
    served_here = true;
    return HttpResponse::Json(200, "{}");
  };
  auto request = testing::Request("GET", "/x", {{"a", "b c&d"}});
  EXPECT_EQ(router.Route(request, testing::kPool1, "x is unknown", serve_here).status, 200);
  EXPECT_TRUE(served_here);
  served_here = false;
  EXPECT_EQ(router.Route(request, testing::kPool2, "x is unknown", serve_here).status, 200);
  EXPECT_FALSE(served_here);
  auto seen = pool2.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].query.at("a"), "b c&d");
  EXPECT_EQ(seen[0].query.at("pool"), testing::kPool2);
  // Named this pool, but the subject lives elsewhere: answer "not homed here".
  auto named_here = testing::Request("GET", "/x", {{"pool", testing::kPool1}});
  EXPECT_TRUE(HomePoolRouter::IsNotHomedHere(router.Route(named_here, testing::kPool2, "x is unknown", serve_here)));
  EXPECT_FALSE(served_here);
}

}  // namespace
}  // namespace tandem
