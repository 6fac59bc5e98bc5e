// `tandem meeting create|update|cancel|list|show|upload|download`: see
// cli/data_commands.h.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/command_util.h"
#include "cli/data_commands.h"
#include "common/file_util.h"
#include "conference/conference_service.h"

namespace tandem {
namespace {

using nlohmann::json;

std::string Dump(const json& value) { return value.dump(2, ' ', false, json::error_handler_t::replace); }

void PrintJson(const json& value) { std::printf("%s\n", Dump(value).c_str()); }

std::string Str(const json& value, std::string_view key) {
  auto found = value.find(key);
  return found != value.end() && found->is_string() ? found->get<std::string>() : std::string();
}

int64_t Int(const json& value, std::string_view key) {
  auto found = value.find(key);
  return found != value.end() && found->is_number_integer() ? found->get<int64_t>() : 0;
}

std::string HumanSize(int64_t bytes) {
  if (bytes < 1024) return fmt::format("{} bytes", bytes);
  if (bytes < (int64_t{1} << 20)) return fmt::format("{:.1f} KiB", bytes / 1024.0);
  return fmt::format("{:.1f} MiB", bytes / (1024.0 * 1024.0));
}

std::string MeetingPath(const std::string& id) { return "/meetings?id=" + UrlEncode(id); }

int64_t TimeOption(std::string_view option, const std::string& text) {
  auto millis = ParseIso8601Millis(text);
  if (!millis) Fail(fmt::format("{}: {}", option, millis.error().message));
  return *millis;
}

void PrintMeeting(std::string_view headline, const json& meeting) {
  std::printf("%s %s of %s (pool %s):\n", std::string(headline).c_str(), Str(meeting, "id").c_str(),
              Str(meeting, "organizer").c_str(), Str(meeting, "home_pool").c_str());
  std::printf("  subject   %s\n", Str(meeting, "subject").c_str());
  std::printf("  when      %s to %s\n", FormatTime(Int(meeting, "start_ms")).c_str(),
              FormatTime(Int(meeting, "end_ms")).c_str());
  std::printf("  state     %s\n", Str(meeting, "state").c_str());
  std::printf("  dial-in   PIN %s\n", Str(meeting, "pin").c_str());
  std::printf("  lobby     %s\n", Str(meeting, "lobby").c_str());
  const json& attendees = meeting.contains("attendees") ? meeting["attendees"] : json::array();
  std::printf("  attendees %zu\n", attendees.size());
  for (const json& attendee : attendees) {
    std::printf("    %s\n", attendee.is_string() ? attendee.get<std::string>().c_str() : "?");
  }
}

void AddCreateCommand(CLI::App& meeting, ConnectionOptions& connection, bool& as_json) {
  auto* create = meeting.add_subcommand("create", "schedule a meeting in the organizer's home pool");
  static std::string organizer, subject, start, end, pin, lobby;
  static std::vector<std::string> attendees;
  create->add_option("--organizer", organizer, "organizer, e.g. sip:alice@example.com")->required();
  create->add_option("--subject", subject, "subject")->required();
  create->add_option("--start", start, "start, ISO 8601 (e.g. 2026-03-01T14:00; UTC unless an offset is given)")
      ->required();
  create->add_option("--end", end, "end, ISO 8601")->required();
  create->add_option("--attendee", attendees, "an invited attendee (repeatable)");
  create->add_option("--pin", pin, "dial-in PIN, 4 to 12 digits (default: 6 random digits)");
  create->add_option("--lobby", lobby, "open, attendees-only (default) or organizer-admits")
      ->check(CLI::IsMember({"open", "attendees-only", "organizer-admits"}));
  create->callback([&connection, &as_json] {
    json body{{"organizer", organizer},
              {"subject", subject},
              {"start_ms", TimeOption("--start", start)},
              {"end_ms", TimeOption("--end", end)},
              {"attendees", attendees}};
    if (!pin.empty()) body["pin"] = pin;
    if (!lobby.empty()) body["lobby"] = lobby;
    json answer = CallJson(connection, "POST", "/meetings", body.dump());
    if (as_json) return PrintJson(answer);
    PrintMeeting("Scheduled meeting", answer);
  });
}

void AddUpdateCommand(CLI::App& meeting, ConnectionOptions& connection, bool& as_json) {
  auto* update = meeting.add_subcommand("update", "change a scheduled meeting (what is not given is kept)");
  static std::string id, subject, start, end, pin, lobby;
  static std::vector<std::string> attendees;
  static bool clear_attendees = false;
  update->add_option("ID", id, "meeting id")->required();
  update->add_option("--subject", subject, "new subject");
  update->add_option("--start", start, "new start, ISO 8601");
  update->add_option("--end", end, "new end, ISO 8601");
  auto* attendee = update->add_option("--attendee", attendees, "an invited attendee (repeatable; replaces the list)");
  update->add_flag("--clear-attendees", clear_attendees, "invite nobody")->excludes(attendee);
  update->add_option("--pin", pin, "new dial-in PIN, 4 to 12 digits");
  update->add_option("--lobby", lobby, "open, attendees-only or organizer-admits")
      ->check(CLI::IsMember({"open", "attendees-only", "organizer-admits"}));
  update->callback([&connection, &as_json] {
    json body = json::object();
    if (!subject.empty()) body["subject"] = subject;
    if (!start.empty()) body["start_ms"] = TimeOption("--start", start);
    if (!end.empty()) body["end_ms"] = TimeOption("--end", end);
    if (!attendees.empty() || clear_attendees) body["attendees"] = attendees;
    if (!pin.empty()) body["pin"] = pin;
    if (!lobby.empty()) body["lobby"] = lobby;
    if (body.empty()) Fail("nothing to change: give --subject, --start, --end, --attendee, --pin or --lobby");
    json answer = CallJson(connection, "PATCH", MeetingPath(id), body.dump());
    if (as_json) return PrintJson(answer);
    PrintMeeting("Updated meeting", answer);
  });
}

void AddCancelCommand(CLI::App& meeting, ConnectionOptions& connection, bool& as_json) {
  auto* cancel = meeting.add_subcommand("cancel", "cancel a meeting (it is kept, marked cancelled)");
  static std::string id;
  cancel->add_option("ID", id, "meeting id")->required();
  cancel->callback([&connection, &as_json] {
    json answer = CallJson(connection, "DELETE", MeetingPath(id));
    if (as_json) return PrintJson(answer);
    std::printf("Cancelled meeting %s (%s).\n", Str(answer, "id").c_str(), Str(answer, "subject").c_str());
  });
}

void AddListCommands(CLI::App& meeting, ConnectionOptions& connection, bool& as_json) {
  auto* list = meeting.add_subcommand("list", "list meetings of every pool, or of one organizer");
  static std::string organizer;
  list->add_option("--organizer", organizer, "only this organizer's meetings");
  list->callback([&connection, &as_json] {
    std::string path = organizer.empty() ? "/meetings" : "/meetings?organizer=" + UrlEncode(organizer);
    json answer = CallJson(connection, "GET", path);
    if (as_json) return PrintJson(answer);
    if (answer["meetings"].empty()) {
      std::printf("No meetings%s.\n", organizer.empty() ? "" : fmt::format(" organized by {}", organizer).c_str());
    } else {
      std::printf("%-16s  %-23s  %-9s  %-32s  %s\n", "ID", "START", "STATE", "ORGANIZER", "SUBJECT");
      for (const json& m : answer["meetings"]) {
        std::printf("%-16s  %-23s  %-9s  %-32s  %s\n", Str(m, "id").c_str(), FormatTime(Int(m, "start_ms")).c_str(),
                    Str(m, "state").c_str(), Str(m, "organizer").c_str(), Str(m, "subject").c_str());
      }
    }
    if (answer.contains("unreachable_pools")) {
      for (const json& pool : answer["unreachable_pools"]) {
        std::fprintf(stderr, "warning: pool %s did not answer; its meetings are not listed\n",
                     pool.get<std::string>().c_str());
      }
    }
  });

  auto* show = meeting.add_subcommand("show", "show one meeting and its content");
  static std::string show_id;
  show->add_option("ID", show_id, "meeting id")->required();
  show->callback([&connection, &as_json] {
    json answer = CallJson(connection, "GET", MeetingPath(show_id));
    if (as_json) return PrintJson(answer);
    PrintMeeting("Meeting", answer);
    const json& content = answer.contains("content") ? answer["content"] : json::array();
    std::printf("  content   %zu file%s\n", content.size(), content.size() == 1 ? "" : "s");
    for (const json& file : content) {
      std::printf("    %-32s %12s  sha256 %s  uploaded %s\n", Str(file, "name").c_str(),
                  HumanSize(Int(file, "size")).c_str(), Str(file, "sha256").c_str(),
                  FormatTime(Int(file, "uploaded_ms")).c_str());
    }
  });
}

void AddContentCommands(CLI::App& meeting, ConnectionOptions& connection, bool& as_json) {
  auto* upload = meeting.add_subcommand("upload", "upload a file (slides, handouts) to a meeting");
  static std::string upload_id, upload_file, upload_name;
  upload->add_option("ID", upload_id, "meeting id")->required();
  upload->add_option("FILE", upload_file, "the file to upload")->required();
  upload->add_option("--name", upload_name, "name to store it under (default: the file's name)");
  upload->callback([&connection, &as_json] {
    std::string bytes = OrFail(ReadFile(upload_file));
    std::string name = upload_name.empty() ? std::filesystem::path(upload_file).filename().string() : upload_name;
    std::string path = fmt::format("/meetings/content?id={}&name={}", UrlEncode(upload_id), UrlEncode(name));
    json answer = CallJson(connection, "POST", path, bytes);
    std::string local_sha = Sha256Hex(bytes);
    if (Str(answer, "sha256") != local_sha) {
      Fail(fmt::format("the server stored {} with SHA-256 {}, but the file's is {}; upload it again", name,
                       Str(answer, "sha256"), local_sha));
    }
    if (as_json) return PrintJson(answer);
    std::printf("Uploaded %s (%s, sha256 %s) to meeting %s.\n", name.c_str(), HumanSize(Int(answer, "size")).c_str(),
                local_sha.c_str(), upload_id.c_str());
  });

  auto* download = meeting.add_subcommand("download", "download a meeting's file");
  static std::string download_id, download_name, download_output;
  download->add_option("ID", download_id, "meeting id")->required();
  download->add_option("NAME", download_name, "the file's name in the meeting")->required();
  download->add_option("-o,--output", download_output, "where to write it")->required();
  download->callback([&connection, &as_json] {
    json listing = CallJson(connection, "GET", "/meetings/content?id=" + UrlEncode(download_id));
    std::string expected_sha;
    for (const json& file : listing["content"]) {
      if (Str(file, "name") == download_name) expected_sha = Str(file, "sha256");
    }
    if (expected_sha.empty()) {
      Fail(fmt::format("meeting {} has no file named '{}'; `tandem meeting show {}` lists its files", download_id,
                       download_name, download_id));
    }
    AdminTarget target = OrFail(ResolveAdminTarget(connection));
    HttpResponse response = OrFail(CallAdmin(
        target, "GET",
        fmt::format("/meetings/content?id={}&name={}", UrlEncode(download_id), UrlEncode(download_name))));
    if (response.status / 100 != 2) Fail(AdminErrorMessage(response));
    std::string sha = Sha256Hex(response.body);
    if (sha != expected_sha) {
      Fail(fmt::format("{} arrived damaged (SHA-256 {} instead of {}); nothing was written; download it again",
                       download_name, sha, expected_sha));
    }
    OrFail(WriteFileAtomically(download_output, response.body));
    if (as_json) {
      return PrintJson({{"meeting_id", download_id},
                        {"name", download_name},
                        {"size", response.body.size()},
                        {"sha256", sha},
                        {"output", download_output}});
    }
    std::printf("Downloaded %s (%s) to %s.\n", download_name.c_str(),
                HumanSize(static_cast<int64_t>(response.body.size())).c_str(), download_output.c_str());
  });
}

// Reads exactly `count` digits at `pos`; -1 if they are not there.
int ReadDigits(std::string_view text, size_t& pos, size_t count) {
  if (pos + count > text.size()) return -1;
  int value = 0;
  for (size_t i = 0; i < count; ++i) {
    char c = text[pos + i];
    if (c < '0' || c > '9') return -1;
    value = value * 10 + (c - '0');
  }
  pos += count;
  return value;
}

}  // namespace

Result<int64_t> ParseIso8601Millis(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("'{}' is not an ISO 8601 time like 2026-03-01T14:00 or 2026-03-01T14:00+02:00 ({})",
                                 text, why));
  };
  size_t pos = 0;
  int year = ReadDigits(text, pos, 4);
  if (year < 0 || pos >= text.size() || text[pos++] != '-') return bad("the date must be YYYY-MM-DD");
  int month = ReadDigits(text, pos, 2);
  if (month < 0 || pos >= text.size() || text[pos++] != '-') return bad("the date must be YYYY-MM-DD");
  int day = ReadDigits(text, pos, 2);
  if (day < 0) return bad("the date must be YYYY-MM-DD");
  std::chrono::year_month_day date{std::chrono::year{year}, std::chrono::month{static_cast<unsigned>(month)},
                                   std::chrono::day{static_cast<unsigned>(day)}};
  if (!date.ok()) return bad("no such date");
  int hour = 0, minute = 0, second = 0, millis = 0;
  if (pos < text.size() && (text[pos] == 'T' || text[pos] == 't' || text[pos] == ' ')) {
    ++pos;
    hour = ReadDigits(text, pos, 2);
    if (hour < 0 || pos >= text.size() || text[pos++] != ':') return bad("the time must be HH:MM[:SS]");
    minute = ReadDigits(text, pos, 2);
    if (minute < 0) return bad("the time must be HH:MM[:SS]");
    if (pos < text.size() && text[pos] == ':') {
      ++pos;
      second = ReadDigits(text, pos, 2);
      if (second < 0) return bad("the seconds must be two digits");
      if (pos < text.size() && text[pos] == '.') {
        ++pos;
        int scale = 100;
        size_t digits = 0;
        while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
          millis += (text[pos] - '0') * scale;
          scale /= 10;
          ++pos;
          ++digits;
        }
        if (digits == 0) return bad("a fraction of a second needs digits");
      }
    }
    if (hour > 23 || minute > 59 || second > 59) return bad("no such time of day");
  }
  int offset_minutes = 0;
  if (pos < text.size()) {
    char sign = text[pos];
    if (sign == 'Z' || sign == 'z') {
      ++pos;
    } else if (sign == '+' || sign == '-') {
      ++pos;
      int offset_hours = ReadDigits(text, pos, 2);
      if (pos < text.size() && text[pos] == ':') ++pos;
      int offset_mins = ReadDigits(text, pos, 2);
      if (offset_hours < 0 || offset_mins < 0 || offset_hours > 18 || offset_mins > 59) {
        return bad("the offset must be +HH:MM or -HH:MM");
      }
      offset_minutes = (offset_hours * 60 + offset_mins) * (sign == '-' ? -1 : 1);
    } else {
      return bad("unexpected text after the time");
    }
  }
  if (pos != text.size()) return bad("unexpected text after the time");
  int64_t days = std::chrono::sys_days(date).time_since_epoch().count();
  int64_t seconds_of_day = hour * 3600 + minute * 60 + second - offset_minutes * 60;
  return days * 86'400'000 + seconds_of_day * 1000 + millis;
}

void AddMeetingCommands(CLI::App& app, ConnectionOptions& connection, bool& as_json) {
  auto* meeting = app.add_subcommand("meeting", "schedule meetings and manage their content")->require_subcommand(1);
  AddCreateCommand(*meeting, connection, as_json);
  AddUpdateCommand(*meeting, connection, as_json);
  AddCancelCommand(*meeting, connection, as_json);
  AddListCommands(*meeting, connection, as_json);
  AddContentCommands(*meeting, connection, as_json);
}

}  // namespace tandem
