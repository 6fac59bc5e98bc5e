#include "cli/backup_commands.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "admin/http_server.h"
#include "cli/command_util.h"

namespace tandem {
namespace {

using nlohmann::json;

std::string PoolQuery(const std::string& pool) { return "pool=" + UrlEncode(pool); }

std::string Text(const json& value) {
  if (value.is_null()) return "-";
  if (value.is_string()) return value.get<std::string>();
  if (value.is_number_float()) return fmt::format("{:.1f}", value.get<double>());
  return value.dump();
}

void PrintStatus(const json& status) {
  std::printf("Backup Service of %s paired with %s\n", status["pool"].get<std::string>().c_str(),
              status["paired_pool"].get<std::string>().c_str());
  for (const auto& [pool, state] : status["service"].items()) {
    std::printf("  service on %s: %s\n", pool.c_str(), state.get<std::string>().c_str());
  }
  for (const json& direction : status["directions"]) {
    std::printf("%s -> %s\n", direction["from"].get<std::string>().c_str(), direction["to"].get<std::string>().c_str());
    std::printf("  %-11s %-15s %-12s %10s %10s %8s\n", "MODULE", "EXPORT", "IMPORT", "SOURCE", "APPLIED", "LAG s");
    for (const json& module : direction["modules"]) {
      std::printf("  %-11s %-15s %-12s %10s %10s %8s\n", Text(module["module"]).c_str(),
                  Text(module["export_state"]).c_str(), Text(module["import_state"]).c_str(),
                  Text(module["source_seq"]).c_str(), Text(module["applied_seq"]).c_str(),
                  Text(module["lag_seconds"]).c_str());
      if (module.contains("initial_sync_rows_sent")) {
        std::printf("      initial sync: %s rows sent\n", Text(module["initial_sync_rows_sent"]).c_str());
      }
      if (module.contains("last_error")) std::printf("      %s\n", Text(module["last_error"]).c_str());
    }
  }
}

}  // namespace

double WaitForSync(const ConnectionOptions& connection, const std::string& pool, const json& targets,
                   int timeout_seconds, bool as_json) {
  const bool terminal = !as_json && ::isatty(STDERR_FILENO);
  auto started = std::chrono::steady_clock::now();
  auto deadline = started + std::chrono::seconds(timeout_seconds);
  std::string blocking;
  while (true) {
    json status = CallJson(connection, "GET", "/backup/status?" + PoolQuery(pool));
    blocking.clear();
    std::string progress;
    for (const json& module : status["directions"].at(0)["modules"]) {
      std::string name = module["module"].get<std::string>();
      if (!targets.contains(name)) continue;
      int64_t target = targets[name].get<int64_t>();
      int64_t applied = module["applied_seq"].is_number() ? module["applied_seq"].get<int64_t>() : 0;
      progress += fmt::format(" {} {}/{}", name, applied, target);
      if (module.contains("initial_sync_rows_sent")) {
        progress += fmt::format(" (initial sync: {} rows)", Text(module["initial_sync_rows_sent"]));
      }
      if (applied < target) {
        blocking = fmt::format("{} is applied up to sequence {} of {}", name, applied, target);
        if (module.contains("last_error")) blocking += ": " + Text(module["last_error"]);
      }
    }
    if (terminal) std::fprintf(stderr, "\rsyncing:%s   ", progress.c_str());
    if (blocking.empty()) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      if (terminal) std::fprintf(stderr, "\n");
      Fail(fmt::format("backup sync of pool {} did not finish within {} s: {}; see `tandem backup status --pool {}`",
                       pool, timeout_seconds, blocking, pool));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (terminal) std::fprintf(stderr, "\n");
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
}

namespace {

void PrintVerify(const json& answer) {
  for (const json& result : answer["results"]) {
    std::string what = fmt::format("{} data of {} (copy on {})", Text(result["module"]), Text(result["source"]),
                                   result.contains("copy") ? Text(result["copy"]) : "the paired pool");
    if (result.contains("error")) {
      std::printf("%s: NOT VERIFIED: %s\n", what.c_str(), Text(result["error"]).c_str());
    } else if (result["consistent"].get<bool>()) {
      std::printf("%s: consistent at sequence %s (%s rows)\n", what.c_str(), Text(result["seq"]).c_str(),
                  Text(result["rows"]).c_str());
    } else {
      std::printf("%s: DIFFERS at sequence %s (%s rows here, %s in the copy); differing keys:\n", what.c_str(),
                  Text(result["seq"]).c_str(), Text(result["rows"]).c_str(), Text(result["copy_rows"]).c_str());
      for (const json& key : result["differing_keys"]) std::printf("  %s\n", key.get<std::string>().c_str());
    }
  }
}

}  // namespace

void AddBackupCommands(CLI::App& app, ConnectionOptions& connection, bool& as_json) {
  auto* service = app.add_subcommand("service", "start or stop a pool service (the Backup Service)")
                      ->require_subcommand(1);
  for (const char* action : {"start", "stop"}) {
    auto* command = service->add_subcommand(action, fmt::format("{} a service of a pool", action));
    static std::string name, pool;
    command->add_option("SERVICE", name, "the service: backup")->required()->check(CLI::IsMember({"backup"}));
    command->add_option("--pool", pool, "FQDN of the pool")->required();
    command->callback([&connection, &as_json, action] {
      json answer = CallJson(connection, "POST",
                             fmt::format("/backup/service?{}&action={}", PoolQuery(pool), action));
      if (as_json) {
        std::printf("%s\n", answer.dump(2).c_str());
      } else {
        std::printf("The Backup Service of pool %s is %s.\n", pool.c_str(),
                    answer["service"].get<std::string>().c_str());
      }
    });
  }

  auto* backup = app.add_subcommand("backup", "the Backup Service between paired pools")->require_subcommand(1);
  auto* status = backup->add_subcommand("status", "per direction and module: states, sequences, lag");
  static std::string status_pool;
  status->add_option("--pool", status_pool, "FQDN of the pool")->required();
  status->callback([&connection, &as_json] {
    json answer = CallJson(connection, "GET", "/backup/status?" + PoolQuery(status_pool));
    if (as_json) {
      std::printf("%s\n", answer.dump(2).c_str());
    } else {
      PrintStatus(answer);
    }
  });

  auto* sync = backup->add_subcommand("sync", "ship everything now and wait until the paired pool applied it");
  static std::string sync_pool, sync_module = "all";
  static int sync_timeout = 60;
  sync->add_option("--pool", sync_pool, "FQDN of the pool")->required();
  sync->add_option("--module", sync_module, "user, conference, cms or all")
      ->check(CLI::IsMember({"user", "conference", "cms", "all"}));
  sync->add_option("--timeout", sync_timeout, "seconds to wait (default 60)");
  sync->callback([&connection, &as_json] {
    json answer = CallJson(connection, "POST",
                           fmt::format("/backup/sync?{}&module={}", PoolQuery(sync_pool), UrlEncode(sync_module)));
    double seconds = WaitForSync(connection, sync_pool, answer["targets"], sync_timeout, as_json);
    if (as_json) {
      std::printf("%s\n", json{{"pool", sync_pool}, {"synced", answer["targets"]}, {"seconds", seconds}}.dump(2).c_str());
    } else {
      std::printf("Synced pool %s to its backup pool in %.2f s:", sync_pool.c_str(), seconds);
      for (const auto& [module, seq] : answer["targets"].items()) {
        std::printf(" %s up to %s", module.c_str(), seq.dump().c_str());
      }
      std::printf("\n");
    }
  });

  auto* divergent = backup->add_subcommand(
      "divergent", "export (JSON) the changes a pool accepted that its backup pool never got (disaster failover)");
  static std::string divergent_pool;
  divergent->add_option("--pool", divergent_pool, "FQDN of the pool")->required();
  divergent->callback([&connection] {
    std::printf("%s\n", CallJson(connection, "GET", "/backup/divergent?" + PoolQuery(divergent_pool)).dump(2).c_str());
  });

  auto* verify = backup->add_subcommand("verify", "compare the pool's data with its copy on the paired pool");
  static std::string verify_pool, verify_module = "all";
  verify->add_option("--pool", verify_pool, "FQDN of the pool")->required();
  verify->add_option("--module", verify_module, "user, conference, cms or all")
      ->check(CLI::IsMember({"user", "conference", "cms", "all"}));
  verify->callback([&connection, &as_json] {
    json answer = CallJson(connection, "POST",
                           fmt::format("/backup/verify?{}&module={}", PoolQuery(verify_pool), UrlEncode(verify_module)));
    if (as_json) {
      std::printf("%s\n", answer.dump(2).c_str());
    } else {
      PrintVerify(answer);
    }
    if (!answer["consistent"].get<bool>()) {
      throw CommandFailure{fmt::format("pool {} and its copy differ (or could not be compared); see above",
                                       verify_pool)};
    }
  });
}

}  // namespace tandem
