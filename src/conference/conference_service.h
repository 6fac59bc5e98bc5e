// Conference data over the admin API: scheduled meetings (subject, times,
// attendees, dial-in PIN, lobby policy) and the content files uploaded to them —
// what the Backup Service copies as module "conference". A meeting is homed in its
// organizer's home pool; requests reaching another pool are forwarded there (see
// HomePoolRouter). Every change is one store transaction with one change-log record.
//
// Routes (all need the admin token):
//   POST   /meetings                  {"organizer", "subject", "start_ms", "end_ms",
//                                      "attendees"?, "pin"?, "lobby"?} -> 201 the meeting
//                                      (random 16-hex id; a random 6-digit PIN if none given)
//   GET    /meetings?id=ID            the meeting, with "content": [files]
//   GET    /meetings?organizer=URI    {"organizer", "meetings": [...]}
//   GET    /meetings[?pool=FQDN]      every pool's meetings (or one pool's):
//                                      {"meetings": [...], "unreachable_pools": [...]}
//   PATCH  /meetings?id=ID (or PUT)   {"subject"?, "start_ms"?, "end_ms"?, "attendees"?,
//                                      "pin"?, "lobby"?}; absent fields kept
//   DELETE /meetings?id=ID            cancels (the meeting is kept, state "cancelled")
//   POST   /meetings/content?id=ID&name=NAME   body = the file's bytes (PUT too);
//                                      413 above the size limit -> the file's metadata
//   GET    /meetings/content?id=ID&name=NAME   the bytes (application/octet-stream)
//   GET    /meetings/content?id=ID             {"meeting_id", "content": [metadata]}
// Times are Unix milliseconds; lobby is "open", "attendees-only" (default) or
// "organizer-admits". Errors are {"error": ...}: 400 malformed request, 422 bad
// value (naming the field), 404 unknown meeting or organizer, 409 cancelled or
// conflicting, 413 content too large, 503 home pool unreachable.
//
// The HttpServer serving these routes must accept bodies of at least
// max_content_bytes (HttpServer's max_body_bytes), or uploads end in its own 413.
//
// Thread-safety: thread-safe; borrows the replica and the store, which must outlive it.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

#include "admin/http_server.h"
#include "cms/cms_replica.h"
#include "common/hash.h"
#include "store/store.h"
#include "userdata/home_pool_router.h"

namespace tandem {

class ConferenceService {
 public:
  static constexpr size_t kDefaultMaxContentBytes = size_t{50} << 20;  // 50 MiB
  static constexpr size_t kMaxSubjectBytes = 256;
  static constexpr size_t kMaxAttendees = 1000;

  ConferenceService(std::string admin_token, CmsReplica& replica, Store& store, std::string local_pool,
                    const ResiliencyMonitor* resiliency = nullptr,
                    size_t max_content_bytes = kDefaultMaxContentBytes);

  void RegisterRoutes(HttpServer& http);

  // The route handlers (public so tests and in-process callers can use them).
  HttpResponse CreateMeeting(const HttpRequest& request);
  HttpResponse GetMeetings(const HttpRequest& request);
  HttpResponse UpdateMeeting(const HttpRequest& request);
  HttpResponse CancelMeeting(const HttpRequest& request);
  HttpResponse PutContent(const HttpRequest& request);
  HttpResponse GetContent(const HttpRequest& request);

 private:
  // Validates the `id` query parameter and runs `serve_here(id)` in the meeting's
  // home pool (here, or forwarded).
  HttpResponse ForMeeting(const HttpRequest& request, const std::function<HttpResponse(const std::string&)>& serve_here,
                          std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Runs `serve_here(organizer)` in the organizer's home pool.
  HttpResponse ForOrganizer(const HttpRequest& request, const std::string& organizer,
                            const std::function<HttpResponse(const std::string&)>& serve_here);
  HttpResponse ListPoolMeetings(const HttpRequest& request);

  Store& store_;
  HomePoolRouter router_;
  const size_t max_content_bytes_;
};

// 16 lower-case hex digits from the OS's random generator (OpenSSL RAND_bytes).
std::string NewMeetingId();
// `digits` random decimal digits.
std::string NewDialInPin(size_t digits);

}  // namespace tandem
