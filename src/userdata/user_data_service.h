// Users' persistent data over the admin API: contact lists, contact groups, the
// presence note and privacy settings (what the Backup Service copies as module
// "user"). Served by any server; a request about a user homed in another pool is
// forwarded there (see HomePoolRouter). Every change is one store transaction with
// one change-log record, so nothing is ever half-written.
//
// Routes (all need the admin token; USER is an address of record):
//   GET    /users/contacts?user=USER                 {"user", "contacts": [...]}
//   POST   /users/contacts?user=USER                 {"contact", "name"?, "groups"?} add or replace
//   DELETE /users/contacts?user=USER&contact=URI
//   GET    /users/groups?user=USER                   {"user", "groups": [...]}
//   POST   /users/groups?user=USER                   {"name"}
//   DELETE /users/groups?user=USER&name=NAME
//   GET    /users/note?user=USER                     {"user", "note", "updated_at_ms"}
//   POST   /users/note?user=USER  (or PUT)           {"note"}   ("" clears)
//   DELETE /users/note?user=USER                     clears the note
//   GET    /users/privacy?user=USER                  {"user", "policy", "allow", "block", ...}
//   POST   /users/privacy?user=USER (or PUT)         {"policy"?, "allow"?, "block"?}; absent fields kept
// Every route also takes `pool=FQDN` (answer for that pool only). Errors are
// {"error": "..."}: 400 for a malformed request (bad JSON, unknown field, missing
// parameter), 422 for a bad value (naming the field), 404 unknown user or entry,
// 409 conflicts (duplicate group, group in use, unknown group), 503 pool unreachable.
//
// Thread-safety: thread-safe once constructed (set the hook before serving);
// borrows the replica and the store, which must outlive it.
#pragma once

#include <functional>
#include <string>

#include "admin/http_server.h"
#include "cms/cms_replica.h"
#include "store/store.h"
#include "userdata/home_pool_router.h"

namespace tandem {

class UserDataService {
 public:
  // Limits on what one request may store.
  static constexpr size_t kMaxDisplayNameBytes = 256;
  static constexpr size_t kMaxGroupNameBytes = 64;
  static constexpr size_t kMaxGroupsPerContact = 64;
  static constexpr size_t kMaxNoteBytes = 2048;
  static constexpr size_t kMaxPrivacyEntries = 1000;

  UserDataService(std::string admin_token, CmsReplica& replica, Store& store, std::string local_pool,
                  const ResiliencyMonitor* resiliency = nullptr);

  // Called with the user's URI after a change that can alter who sees the user's
  // presence or what they see (contacts, privacy, note) was committed in this
  // pool, on the thread that served the request. The presence module re-evaluates
  // the user's watchers there. Set before RegisterRoutes.
  using PresenceChangeHook = std::function<void(const std::string& user_uri)>;
  void SetPresenceChangeHook(PresenceChangeHook hook) { on_presence_change_ = std::move(hook); }

  void RegisterRoutes(HttpServer& http);

  // The route handlers (public so tests and in-process callers can use them).
  HttpResponse ListContacts(const HttpRequest& request);
  HttpResponse UpsertContact(const HttpRequest& request);
  HttpResponse RemoveContact(const HttpRequest& request);
  HttpResponse ListGroups(const HttpRequest& request);
  HttpResponse AddGroup(const HttpRequest& request);
  HttpResponse RemoveGroup(const HttpRequest& request);
  HttpResponse GetNote(const HttpRequest& request);
  HttpResponse SetNote(const HttpRequest& request);
  HttpResponse ClearNote(const HttpRequest& request);
  HttpResponse GetPrivacy(const HttpRequest& request);
  HttpResponse UpdatePrivacy(const HttpRequest& request);

 private:
  // Validates the `user` query parameter and runs `serve_here(user_uri)` in the
  // user's home pool (here, or forwarded).
  HttpResponse ForUser(const HttpRequest& request, const std::function<HttpResponse(const std::string&)>& serve_here);
  void PresenceChanged(const std::string& user_uri) const;

  Store& store_;
  HomePoolRouter router_;
  PresenceChangeHook on_presence_change_;
};

// A contact group name: 1 to 64 bytes of UTF-8 without control characters.
Status CheckContactGroupName(std::string_view name);
// A privacy list entry: an address of record or a domain; returns it normalized
// (lower-case domain).
Result<std::string> NormalizePrivacyEntry(std::string_view entry);

}  // namespace tandem
