// The `tandem` commands of the Backup Service:
//   tandem service start|stop backup --pool P     (Start-CsWindowsService LYNCBACKUP)
//   tandem backup status --pool P [--json]        (Get-CsBackupServiceStatus)
//   tandem backup sync --pool P [--module M] [--timeout S]  (Invoke-CsBackupServiceSync)
//   tandem backup verify --pool P [--module M]
// They call the /backup/* admin routes (backup/backup_service.h); any server
// answers, forwarding to the named pool.
//
// Thread-safety: command setup and callbacks run on the CLI's one thread.
#pragma once

#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli/admin_target.h"

namespace tandem {

void AddBackupCommands(CLI::App& app, ConnectionOptions& connection, bool& as_json);

// Waits until pool `pool`'s partner applied every module of `targets` ({"module":
// seq}, as POST /backup/sync answers) up to its sequence, showing progress on a
// terminal unless `as_json`; returns the seconds it took. Fails the command with the
// reason the status gives when `timeout_seconds` pass. (`cms failover` reuses it.)
double WaitForSync(const ConnectionOptions& connection, const std::string& pool, const nlohmann::json& targets,
                   int timeout_seconds, bool as_json);

}  // namespace tandem
