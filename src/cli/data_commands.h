// The `tandem` commands for users' persistent data and for conference data:
//   tandem user contacts add|remove|list, user groups add|remove|list,
//   tandem user note set|show|clear, user privacy show|set        (AddUserDataCommands)
//   tandem meeting create|update|cancel|list|show|upload|download  (AddMeetingCommands)
// They call the admin routes of userdata/user_data_service.h and
// conference/conference_service.h; any server answers, forwarding to the home pool.
//
// AddUserDataCommands adds to the `user` subcommand, creating it if it is not
// there yet (call it after AddUserCommands to share it).
//
// Thread-safety: command setup and callbacks run on the CLI's one thread.
#pragma once

#include <cstdint>
#include <string_view>

#include <CLI/CLI.hpp>

#include "cli/admin_target.h"
#include "common/error.h"

namespace tandem {

void AddUserDataCommands(CLI::App& app, ConnectionOptions& connection, bool& as_json);
void AddMeetingCommands(CLI::App& app, ConnectionOptions& connection, bool& as_json);

// "2026-03-01T14:00", "2026-03-01 14:00:30", "2026-03-01T14:00Z",
// "2026-03-01T14:00:00.250+02:00" -> Unix milliseconds. No offset means UTC.
Result<int64_t> ParseIso8601Millis(std::string_view text);

}  // namespace tandem
