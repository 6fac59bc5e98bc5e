#include "userdata/user_data_service.h"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

#include "users/user_service.h"

namespace tandem {

using nlohmann::json;

namespace {

json ParsedPayload(const std::string& payload) { return json::parse(payload, nullptr, false); }

HttpResponse Ok(const json& body) { return HttpResponse::Json(200, DumpJson(body) + "\n"); }

}  // namespace

Status CheckContactGroupName(std::string_view name) {
  if (name.empty() || name.size() > UserDataService::kMaxGroupNameBytes || !IsValidUtf8(name)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("a group name must be 1 to {} bytes of UTF-8", UserDataService::kMaxGroupNameBytes));
  }
  if (std::any_of(name.begin(), name.end(), [](char c) {
        auto u = static_cast<unsigned char>(c);
        return u < 0x20 || u == 0x7f;
      })) {
    return MakeError(ErrorCode::kInvalidArgument, "a group name must not contain control characters");
  }
  return OkStatus();
}

Result<std::string> NormalizePrivacyEntry(std::string_view entry) {
  if (entry.starts_with("sip:")) return NormalizedAddressOfRecord(entry);
  bool is_domain = !entry.empty() && entry.size() <= 253 && entry.front() != '.' && entry.back() != '.' &&
                   entry.front() != '-' && entry.find("..") == std::string_view::npos &&
                   std::all_of(entry.begin(), entry.end(), [](char c) {
                     return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-';
                   });
  if (!is_domain) {
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("'{}' is neither a SIP address of record (sip:user@domain) nor a domain", entry));
  }
  std::string domain(entry);
  std::transform(domain.begin(), domain.end(), domain.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return domain;
}

UserDataService::UserDataService(std::string admin_token, CmsReplica& replica, Store& store, std::string local_pool,
                                 const ResiliencyMonitor* resiliency)
    : store_(store), router_(std::move(admin_token), replica, std::move(local_pool), &store, resiliency) {}

void UserDataService::RegisterRoutes(HttpServer& http) {
  auto route = [&](const char* method, const char* path, HttpResponse (UserDataService::*handler)(const HttpRequest&)) {
    http.Route(method, path, [this, handler](const HttpRequest& request) { return (this->*handler)(request); });
  };
  route("GET", "/users/contacts", &UserDataService::ListContacts);
  route("POST", "/users/contacts", &UserDataService::UpsertContact);
  route("PUT", "/users/contacts", &UserDataService::UpsertContact);
  route("DELETE", "/users/contacts", &UserDataService::RemoveContact);
  route("GET", "/users/groups", &UserDataService::ListGroups);
  route("POST", "/users/groups", &UserDataService::AddGroup);
  route("DELETE", "/users/groups", &UserDataService::RemoveGroup);
  route("GET", "/users/note", &UserDataService::GetNote);
  route("POST", "/users/note", &UserDataService::SetNote);
  route("PUT", "/users/note", &UserDataService::SetNote);
  route("DELETE", "/users/note", &UserDataService::ClearNote);
  route("GET", "/users/privacy", &UserDataService::GetPrivacy);
  route("POST", "/users/privacy", &UserDataService::UpdatePrivacy);
  route("PUT", "/users/privacy", &UserDataService::UpdatePrivacy);
}

void UserDataService::PresenceChanged(const std::string& user_uri) const {
  if (on_presence_change_) on_presence_change_(user_uri);
}

HttpResponse UserDataService::ForUser(const HttpRequest& request,
                                      const std::function<HttpResponse(const std::string&)>& serve_here) {
  auto raw = RequiredQuery(request, "user");
  if (!raw) return raw.error();
  auto uri = AddressOfRecordParameter("query parameter 'user'", *raw);
  if (!uri) return uri.error();
  auto aor = ParseAddressOfRecord(*uri);
  TANDEM_CHECK(aor.has_value());  // normalized just above
  auto found = store_.FindUser(aor->user, aor->domain);
  if (!found) return ErrorResponse(found.error());
  std::optional<std::string> home_pool;
  if (found->has_value()) home_pool = (*found)->home_pool;
  return router_.Route(request, home_pool, fmt::format("user {} is not provisioned", *uri),
                       [&] { return serve_here(*uri); });
}

HttpResponse UserDataService::ListContacts(const HttpRequest& request) {
  return ForUser(request, [&](const std::string& user) {
    auto contacts = store_.ListContacts(user);
    if (!contacts) return ErrorResponse(contacts.error());
    json list = json::array();
    for (const ContactRecord& contact : *contacts) list.push_back(ParsedPayload(ContactPayloadJson(contact)));
    return Ok({{"user", user}, {"contacts", list}});
  });
}

HttpResponse UserDataService::UpsertContact(const HttpRequest& request) {
  auto body = ParseJsonObject(request.body, {"contact", "name", "groups"});
  if (!body) return body.error();
  if (!body->contains("contact")) return ApiError(400, "field 'contact' is required");
  if (!(*body)["contact"].is_string()) return ApiError(422, "field 'contact' must be a string");
  auto contact = AddressOfRecordParameter("field 'contact'", (*body)["contact"].get<std::string>());
  if (!contact) return contact.error();
  auto name = OptionalStringField(*body, "name", kMaxDisplayNameBytes);
  if (!name) return name.error();
  auto groups = OptionalStringListField(*body, "groups", kMaxGroupsPerContact,
                                        [](std::string_view group) -> Result<std::string> {
                                          if (auto s = CheckContactGroupName(group); !s) return std::unexpected(s.error());
                                          return std::string(group);
                                        });
  if (!groups) return groups.error();
  return ForUser(request, [&](const std::string& user) {
    ContactRecord record{user, *contact, name->value_or(""), groups->value_or(std::vector<std::string>{})};
    if (auto stored = store_.UpsertContact(record); !stored) return ErrorResponse(stored.error());
    PresenceChanged(user);
    return Ok({{"user", user}, {"contact", record.contact}, {"display_name", record.display_name},
               {"groups", record.groups}});
  });
}

HttpResponse UserDataService::RemoveContact(const HttpRequest& request) {
  auto raw = RequiredQuery(request, "contact");
  if (!raw) return raw.error();
  auto contact = AddressOfRecordParameter("query parameter 'contact'", *raw);
  if (!contact) return contact.error();
  return ForUser(request, [&](const std::string& user) {
    if (auto removed = store_.RemoveContact(user, *contact); !removed) return ErrorResponse(removed.error());
    PresenceChanged(user);
    return Ok({{"user", user}, {"removed", *contact}});
  });
}

HttpResponse UserDataService::ListGroups(const HttpRequest& request) {
  return ForUser(request, [&](const std::string& user) {
    auto groups = store_.ListContactGroups(user);
    if (!groups) return ErrorResponse(groups.error());
    json list = json::array();
    for (const ContactGroupRecord& group : *groups) list.push_back(ParsedPayload(ContactGroupPayloadJson(group)));
    return Ok({{"user", user}, {"groups", list}});
  });
}

HttpResponse UserDataService::AddGroup(const HttpRequest& request) {
  auto body = ParseJsonObject(request.body, {"name"});
  if (!body) return body.error();
  if (!body->contains("name")) return ApiError(400, "field 'name' is required");
  if (!(*body)["name"].is_string()) return ApiError(422, "field 'name' must be a string");
  std::string name = (*body)["name"].get<std::string>();
  if (auto valid = CheckContactGroupName(name); !valid) {
    return ApiError(422, fmt::format("field 'name': {}", valid.error().message));
  }
  return ForUser(request, [&](const std::string& user) {
    if (auto added = store_.AddContactGroup(user, name); !added) return ErrorResponse(added.error());
    return Ok({{"user", user}, {"group", name}});
  });
}

HttpResponse UserDataService::RemoveGroup(const HttpRequest& request) {
  auto name = RequiredQuery(request, "name");
  if (!name) return name.error();
  if (auto valid = CheckContactGroupName(*name); !valid) {
    return ApiError(422, fmt::format("query parameter 'name': {}", valid.error().message));
  }
  return ForUser(request, [&](const std::string& user) {
    if (auto removed = store_.RemoveContactGroup(user, *name); !removed) return ErrorResponse(removed.error());
    return Ok({{"user", user}, {"removed", *name}});
  });
}

HttpResponse UserDataService::GetNote(const HttpRequest& request) {
  return ForUser(request, [&](const std::string& user) {
    auto note = store_.GetPresenceNote(user);
    if (!note) return ErrorResponse(note.error());
    return Ok({{"user", user}, {"note", note->note}, {"updated_at_ms", note->updated_at_ms}});
  });
}

HttpResponse UserDataService::SetNote(const HttpRequest& request) {
  auto body = ParseJsonObject(request.body, {"note"});
  if (!body) return body.error();
  if (!body->contains("note")) return ApiError(400, "field 'note' is required (\"\" clears the note)");
  auto note = OptionalStringField(*body, "note", kMaxNoteBytes, /*multiline=*/true);
  if (!note) return note.error();
  return ForUser(request, [&](const std::string& user) {
    std::string text = note->value_or("");
    if (auto set = store_.SetPresenceNote(user, text); !set) return ErrorResponse(set.error());
    PresenceChanged(user);
    return Ok({{"user", user}, {"note", text}});
  });
}

HttpResponse UserDataService::ClearNote(const HttpRequest& request) {
  return ForUser(request, [&](const std::string& user) {
    if (auto set = store_.SetPresenceNote(user, ""); !set) return ErrorResponse(set.error());
    PresenceChanged(user);
    return Ok({{"user", user}, {"note", ""}});
  });
}

HttpResponse UserDataService::GetPrivacy(const HttpRequest& request) {
  return ForUser(request, [&](const std::string& user) {
    auto privacy = store_.GetPrivacy(user);
    if (!privacy) return ErrorResponse(privacy.error());
    json out = ParsedPayload(PrivacyPayloadJson(*privacy));
    out["user"] = user;
    return Ok(out);
  });
}

HttpResponse UserDataService::UpdatePrivacy(const HttpRequest& request) {
  auto body = ParseJsonObject(request.body, {"policy", "allow", "block"});
  if (!body) return body.error();
  if (body->empty()) return ApiError(400, "nothing to change: give 'policy', 'allow' or 'block'");
  PrivacyUpdate update;
  auto policy_name = OptionalStringField(*body, "policy", 32);
  if (!policy_name) return policy_name.error();
  if (policy_name->has_value()) {
    update.policy = ParsePrivacyPolicy(**policy_name);
    if (!update.policy) return ApiError(422, "field 'policy' must be one of allow-contacts, allow-all, allow-listed");
  }
  auto allow = OptionalStringListField(*body, "allow", kMaxPrivacyEntries, NormalizePrivacyEntry);
  if (!allow) return allow.error();
  auto block = OptionalStringListField(*body, "block", kMaxPrivacyEntries, NormalizePrivacyEntry);
  if (!block) return block.error();
  update.allow = std::move(*allow);
  update.block = std::move(*block);
  return ForUser(request, [&](const std::string& user) {
    auto privacy = store_.UpdatePrivacy(user, update);
    if (!privacy) return ErrorResponse(privacy.error());
    PresenceChanged(user);
    json out = ParsedPayload(PrivacyPayloadJson(*privacy));
    out["user"] = user;
    return Ok(out);
  });
}

}  // namespace tandem
