#include "conference/conference_service.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cctype>
#include <limits>

#include <fmt/format.h>

#include "users/user_service.h"

namespace tandem {

using nlohmann::json;

namespace {

// Latest time accepted: 9999-12-31T23:59:59.999Z.
constexpr int64_t kMaxMillis = 253402300799999;

HttpResponse JsonAnswer(int status, const json& body) { return HttpResponse::Json(status, DumpJson(body) + "\n"); }

json MeetingJson(const MeetingRecord& meeting) { return json::parse(MeetingPayloadJson(meeting), nullptr, false); }

json ContentJson(const ContentInfo& info) { return json::parse(ContentInfoJson(info), nullptr, false); }

HttpResult<std::optional<int64_t>> OptionalMillisField(const json& body, std::string_view field) {
  auto found = body.find(field);
  if (found == body.end() || found->is_null()) return std::optional<int64_t>();
  bool valid = (found->is_number_unsigned() && found->get<uint64_t>() <= static_cast<uint64_t>(kMaxMillis)) ||
               (found->is_number_integer() && !found->is_number_unsigned() && found->get<int64_t>() >= 0 &&
                found->get<int64_t>() <= kMaxMillis);
  if (!valid) {
    return std::unexpected(
        ApiError(422, fmt::format("field '{}' must be a time in Unix milliseconds (a non-negative integer)", field)));
  }
  return std::optional<int64_t>(found->get<int64_t>());
}

bool IsPin(std::string_view pin) {
  return pin.size() >= 4 && pin.size() <= 12 &&
         std::all_of(pin.begin(), pin.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The optional fields shared by create and update, validated.
struct MeetingFields {
  std::optional<std::string> subject;
  std::optional<int64_t> start_ms;
  std::optional<int64_t> end_ms;
  std::optional<std::vector<std::string>> attendees;
  std::optional<std::string> pin;
  std::optional<LobbyPolicy> lobby;
};

HttpResult<MeetingFields> ParseMeetingFields(const json& body) {
  MeetingFields fields;
  auto subject = OptionalStringField(body, "subject", ConferenceService::kMaxSubjectBytes);
  if (!subject) return std::unexpected(subject.error());
  fields.subject = std::move(*subject);
  auto start = OptionalMillisField(body, "start_ms");
  if (!start) return std::unexpected(start.error());
  fields.start_ms = *start;
  auto end = OptionalMillisField(body, "end_ms");
  if (!end) return std::unexpected(end.error());
  fields.end_ms = *end;
  if (fields.start_ms && fields.end_ms && *fields.end_ms <= *fields.start_ms) {
    return std::unexpected(ApiError(422, "field 'end_ms' must be after 'start_ms'"));
  }
  auto attendees = OptionalStringListField(body, "attendees", ConferenceService::kMaxAttendees,
                                           NormalizedAddressOfRecord);
  if (!attendees) return std::unexpected(attendees.error());
  fields.attendees = std::move(*attendees);
  auto pin = OptionalStringField(body, "pin", 12);
  if (!pin) return std::unexpected(pin.error());
  if (pin->has_value() && !IsPin(**pin)) return std::unexpected(ApiError(422, "field 'pin' must be 4 to 12 digits"));
  fields.pin = std::move(*pin);
  auto lobby = OptionalStringField(body, "lobby", 32);
  if (!lobby) return std::unexpected(lobby.error());
  if (lobby->has_value()) {
    fields.lobby = ParseLobbyPolicy(**lobby);
    if (!fields.lobby) {
      return std::unexpected(ApiError(422, "field 'lobby' must be one of open, organizer-admits, attendees-only"));
    }
  }
  return fields;
}

}  // namespace

std::string NewMeetingId() {
  unsigned char bytes[8];
  TANDEM_CHECK(RAND_bytes(bytes, sizeof(bytes)) == 1);
  std::string id;
  for (unsigned char b : bytes) id += fmt::format("{:02x}", b);
  return id;
}

std::string NewDialInPin(size_t digits) {
  std::string pin;
  while (pin.size() < digits) {
    unsigned char bytes[16];
    TANDEM_CHECK(RAND_bytes(bytes, sizeof(bytes)) == 1);
    for (unsigned char b : bytes) {
      // 250 = 25 * 10: rejecting the rest keeps every digit equally likely.
      if (b < 250 && pin.size() < digits) pin.push_back(static_cast<char>('0' + b % 10));
    }
  }
  return pin;
}

ConferenceService::ConferenceService(std::string admin_token, CmsReplica& replica, Store& store,
                                     std::string local_pool, const ResiliencyMonitor* resiliency,
                                     size_t max_content_bytes)
    : store_(store),
      router_(std::move(admin_token), replica, std::move(local_pool), &store, resiliency),
      max_content_bytes_(max_content_bytes) {}

void ConferenceService::RegisterRoutes(HttpServer& http) {
  auto route = [&](const char* method, const char* path, HttpResponse (ConferenceService::*handler)(const HttpRequest&)) {
    http.Route(method, path, [this, handler](const HttpRequest& request) { return (this->*handler)(request); });
  };
  route("POST", "/meetings", &ConferenceService::CreateMeeting);
  route("GET", "/meetings", &ConferenceService::GetMeetings);
  route("PATCH", "/meetings", &ConferenceService::UpdateMeeting);
  route("PUT", "/meetings", &ConferenceService::UpdateMeeting);
  route("DELETE", "/meetings", &ConferenceService::CancelMeeting);
  route("POST", "/meetings/content", &ConferenceService::PutContent);
  route("PUT", "/meetings/content", &ConferenceService::PutContent);
  route("GET", "/meetings/content", &ConferenceService::GetContent);
}

HttpResponse ConferenceService::ForMeeting(const HttpRequest& request,
                                           const std::function<HttpResponse(const std::string&)>& serve_here,
                                           std::chrono::milliseconds timeout) {
  auto raw = RequiredQuery(request, "id");
  if (!raw) return raw.error();
  std::string id = *raw;
  std::transform(id.begin(), id.end(), id.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (id.size() != 16 || !std::all_of(id.begin(), id.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); })) {
    return ApiError(422, "query parameter 'id' must be a meeting id (16 hex digits)");
  }
  auto meeting = store_.GetMeeting(id);
  if (!meeting) return ErrorResponse(meeting.error());
  std::optional<std::string> home_pool;
  if (meeting->has_value()) home_pool = (*meeting)->home_pool;
  return router_.Route(request, home_pool, fmt::format("meeting {} does not exist", id),
                       [&] { return serve_here(id); }, timeout);
}

HttpResponse ConferenceService::ForOrganizer(const HttpRequest& request, const std::string& organizer,
                                             const std::function<HttpResponse(const std::string&)>& serve_here) {
  auto aor = ParseAddressOfRecord(organizer);
  TANDEM_CHECK(aor.has_value());  // callers pass a normalized address of record
  auto found = store_.FindUser(aor->user, aor->domain);
  if (!found) return ErrorResponse(found.error());
  std::optional<std::string> home_pool;
  if (found->has_value()) home_pool = (*found)->home_pool;
  return router_.Route(request, home_pool, fmt::format("organizer {} is not provisioned", organizer),
                       [&] { return serve_here(organizer); });
}

HttpResponse ConferenceService::CreateMeeting(const HttpRequest& request) {
  auto body = ParseJsonObject(request.body, {"organizer", "subject", "start_ms", "end_ms", "attendees", "pin", "lobby"});
  if (!body) return body.error();
  for (const char* required : {"organizer", "subject", "start_ms", "end_ms"}) {
    if (!body->contains(required) || (*body)[required].is_null()) {
      return ApiError(400, fmt::format("field '{}' is required", required));
    }
  }
  if (!(*body)["organizer"].is_string()) return ApiError(422, "field 'organizer' must be a string");
  auto organizer = AddressOfRecordParameter("field 'organizer'", (*body)["organizer"].get<std::string>());
  if (!organizer) return organizer.error();
  auto fields = ParseMeetingFields(*body);
  if (!fields) return fields.error();
  if (fields->subject->empty()) return ApiError(422, "field 'subject' must not be empty");
  return ForOrganizer(request, *organizer, [&](const std::string& uri) {
    MeetingRecord meeting;
    meeting.organizer = uri;
    meeting.subject = *fields->subject;
    meeting.start_ms = *fields->start_ms;
    meeting.end_ms = *fields->end_ms;
    meeting.attendees = fields->attendees.value_or(std::vector<std::string>{});
    meeting.pin = fields->pin ? *fields->pin : NewDialInPin(6);
    meeting.lobby = fields->lobby.value_or(LobbyPolicy::kAttendeesOnly);
    // 64 random bits: a collision is next to impossible, but cheap to survive.
    for (int attempt = 0; attempt < 3; ++attempt) {
      meeting.id = NewMeetingId();
      auto created = store_.CreateMeeting(meeting);
      if (created) return JsonAnswer(201, MeetingJson(*created));
      if (created.error().code != ErrorCode::kAlreadyExists) return ErrorResponse(created.error());
    }
    return ApiError(500, "could not pick an unused meeting id; retry");
  });
}

HttpResponse ConferenceService::GetMeetings(const HttpRequest& request) {
  if (request.query.count("id")) {
    return ForMeeting(request, [&](const std::string& id) {
      auto meeting = store_.GetMeeting(id);
      if (!meeting) return ErrorResponse(meeting.error());
      if (!meeting->has_value()) return ApiError(404, fmt::format("meeting {} does not exist", id));
      auto content = store_.ListContent(id);
      if (!content) return ErrorResponse(content.error());
      json out = MeetingJson(**meeting);
      out["content"] = json::array();
      for (const ContentInfo& info : *content) out["content"].push_back(ContentJson(info));
      return JsonAnswer(200, out);
    });
  }
  auto organizer_param = OptionalQuery(request, "organizer");
  if (!organizer_param) return organizer_param.error();
  if (organizer_param->has_value()) {
    auto organizer = AddressOfRecordParameter("query parameter 'organizer'", **organizer_param);
    if (!organizer) return organizer.error();
    return ForOrganizer(request, *organizer, [&](const std::string& uri) {
      auto meetings = store_.ListMeetings({.organizer = uri});
      if (!meetings) return ErrorResponse(meetings.error());
      json list = json::array();
      for (const MeetingRecord& meeting : *meetings) list.push_back(MeetingJson(meeting));
      return JsonAnswer(200, {{"organizer", uri}, {"meetings", list}});
    });
  }
  return ListPoolMeetings(request);
}

HttpResponse ConferenceService::ListPoolMeetings(const HttpRequest& request) {
  auto snapshot = router_.replica().Current();
  std::vector<const PoolSpec*> pools;
  if (auto named = request.query.find("pool"); named != request.query.end()) {
    const PoolSpec* pool = snapshot.topology->FindPool(named->second);
    if (pool == nullptr) return ApiError(422, fmt::format("pool '{}' is not in the topology", named->second));
    pools.push_back(pool);
  } else {
    for (const PoolSpec& pool : snapshot.topology->pools) pools.push_back(&pool);
  }
  json meetings = json::array();
  json unreachable = json::array();
  for (const PoolSpec* pool : pools) {
    if (pool->fqdn == router_.local_pool()) {
      auto listed = store_.ListMeetings({.home_pool = pool->fqdn});
      if (!listed) return ErrorResponse(listed.error());
      for (const MeetingRecord& meeting : *listed) meetings.push_back(MeetingJson(meeting));
      continue;
    }
    HttpRequest forwarded = request;
    forwarded.body.clear();
    auto response = router_.Forward(*pool, forwarded);
    json answer = response && response->status == 200 ? json::parse(response->body, nullptr, false) : json();
    if (!answer.is_object() || !answer.contains("meetings") || !answer["meetings"].is_array()) {
      unreachable.push_back(pool->fqdn);
      continue;
    }
    for (const json& meeting : answer["meetings"]) meetings.push_back(meeting);
  }
  return JsonAnswer(200, {{"meetings", meetings}, {"unreachable_pools", unreachable}});
}

HttpResponse ConferenceService::UpdateMeeting(const HttpRequest& request) {
  auto body = ParseJsonObject(request.body, {"organizer", "subject", "start_ms", "end_ms", "attendees", "pin", "lobby"});
  if (!body) return body.error();
  if (body->contains("organizer")) {
    return ApiError(422, "field 'organizer' cannot change; cancel the meeting and create a new one");
  }
  if (body->empty()) return ApiError(400, "nothing to change: give subject, start_ms, end_ms, attendees, pin or lobby");
  auto fields = ParseMeetingFields(*body);
  if (!fields) return fields.error();
  if (fields->subject && fields->subject->empty()) return ApiError(422, "field 'subject' must not be empty");
  MeetingUpdate update{fields->subject, fields->start_ms, fields->end_ms, fields->attendees, fields->pin, fields->lobby};
  return ForMeeting(request, [&](const std::string& id) {
    auto updated = store_.UpdateMeeting(id, update);
    if (!updated) return ErrorResponse(updated.error());
    return JsonAnswer(200, MeetingJson(*updated));
  });
}

HttpResponse ConferenceService::CancelMeeting(const HttpRequest& request) {
  return ForMeeting(request, [&](const std::string& id) {
    auto cancelled = store_.CancelMeeting(id);
    if (!cancelled) return ErrorResponse(cancelled.error());
    return JsonAnswer(200, MeetingJson(*cancelled));
  });
}

HttpResponse ConferenceService::PutContent(const HttpRequest& request) {
  if (request.body.size() > max_content_bytes_) {
    return ApiError(413, fmt::format("the content is {} bytes; the limit is {} bytes ({} MiB)", request.body.size(),
                                     max_content_bytes_, max_content_bytes_ >> 20));
  }
  auto name = RequiredQuery(request, "name");
  if (!name) return name.error();
  if (!IsValidContentName(*name)) {
    return ApiError(422,
                    "query parameter 'name' must be a file name: 1 to 255 bytes, no '/', '\\' or control characters");
  }
  // Forwarding 50 MiB to another pool takes longer than a small admin call.
  return ForMeeting(
      request,
      [&](const std::string& id) {
        auto stored = store_.PutContent({id, *name, 0, Sha256Hex(request.body)}, request.body);
        if (!stored) return ErrorResponse(stored.error());
        return JsonAnswer(201, ContentJson(*stored));
      },
      std::chrono::seconds(120));
}

HttpResponse ConferenceService::GetContent(const HttpRequest& request) {
  auto name = OptionalQuery(request, "name");
  if (!name) return name.error();
  return ForMeeting(
      request,
      [&](const std::string& id) {
        if (!name->has_value()) {
          auto listed = store_.ListContent(id);
          if (!listed) return ErrorResponse(listed.error());
          json files = json::array();
          for (const ContentInfo& info : *listed) files.push_back(ContentJson(info));
          return JsonAnswer(200, {{"meeting_id", id}, {"content", files}});
        }
        auto content = store_.GetContent(id, **name);
        if (!content) return ErrorResponse(content.error());
        if (!content->has_value()) {
          auto meeting = store_.GetMeeting(id);
          if (meeting && !meeting->has_value()) return ApiError(404, fmt::format("meeting {} does not exist", id));
          return ApiError(404, fmt::format("meeting {} has no content named '{}'", id, **name));
        }
        HttpResponse response;
        response.status = 200;
        response.content_type = "application/octet-stream";
        response.body = std::move((*content)->bytes);
        return response;
      },
      std::chrono::seconds(120));
}

}  // namespace tandem
