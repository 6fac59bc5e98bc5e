// `tandem drill [TOPOLOGY] [--users N] [--data-dir DIR] [--json]`: the DR drill of a
// two-pool paired topology (drill/drill.h). Its own library, since the drill
// depends on the rest of the CLI (launcher, admin calls).
//
// Thread-safety: command setup and callback run on the CLI's one thread.
#pragma once

#include <CLI/CLI.hpp>

#include "cli/admin_target.h"

namespace tandem {

void AddDrillCommand(CLI::App& app, ConnectionOptions& connection, bool& as_json);

}  // namespace tandem
