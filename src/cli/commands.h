// The `tandem` management CLI: builds the command tree (CLI11) and runs one
// command. Every command prints human-readable output by default and JSON with
// --json, exits 0 on success, and on failure prints one sentence to stderr (what
// failed, why, what to do) and exits non-zero.
#pragma once

#include <vector>

#include "cli/admin_target.h"

namespace CLI {
class App;
}

namespace tandem {

// Adds commands that live in libraries depending on this one (`tandem drill`).
using CommandAdder = void (*)(CLI::App& app, ConnectionOptions& connection, bool& as_json);

int RunCli(int argc, char** argv, const std::vector<CommandAdder>& more_commands = {});

}  // namespace tandem
