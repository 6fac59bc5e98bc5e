#include "cli/commands.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <map>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "cli/admin_target.h"
#include "cli/backup_commands.h"
#include "cli/command_util.h"
#include "cli/data_commands.h"
#include "cli/launcher.h"
#include "cli/pool_failover_commands.h"
#include "cms/cms_document.h"
#include "common/file_util.h"
#include "topology/topology.h"
#include "users/user_service.h"

namespace tandem {
namespace {

using nlohmann::json;

// Prints every diagnostic; returns the parse result.
TopologyParseResult ValidateAndReport(const std::string& file) {
  TopologyParseResult parsed = LoadTopologyFile(file);
  for (const Diagnostic& diagnostic : parsed.diagnostics) std::fprintf(stderr, "%s\n", diagnostic.ToString().c_str());
  return parsed;
}

size_t CountServers(const Topology& topology) {
  size_t count = 0;
  for (const PoolSpec& pool : topology.pools) count += pool.servers.size();
  return count;
}

void AddTopologyCommands(CLI::App& app, ConnectionOptions& connection, bool& as_json) {
  auto* topology = app.add_subcommand("topology", "validate, publish and show the topology")->require_subcommand(1);

  auto* validate = topology->add_subcommand("validate", "check a topology file and report every problem");
  static std::string validate_file;
  validate->add_option("FILE", validate_file, "topology file (TOML)")->required();
  validate->callback([&as_json] {
    TopologyParseResult parsed = ValidateAndReport(validate_file);
    size_t errors = 0, warnings = 0;
    for (const Diagnostic& d : parsed.diagnostics) (d.severity == Severity::kError ? errors : warnings)++;
    if (as_json) {
      json diagnostics = json::array();
      for (const Diagnostic& d : parsed.diagnostics) {
        diagnostics.push_back({{"severity", d.severity == Severity::kError ? "error" : "warning"},
                               {"file", d.file}, {"line", d.line}, {"message", d.message}});
      }
      std::printf("%s\n", json{{"valid", errors == 0}, {"diagnostics", diagnostics}}.dump(2).c_str());
    }
    if (errors > 0) Fail(fmt::format("{}: {} error{}, {} warning{}; fix them and validate again", validate_file, errors,
                                     errors == 1 ? "" : "s", warnings, warnings == 1 ? "" : "s"));
    if (!as_json) {
      std::printf("%s: valid (%zu pools, %zu servers, %zu warning%s)\n", validate_file.c_str(),
                  parsed.topology->pools.size(), CountServers(*parsed.topology), warnings, warnings == 1 ? "" : "s");
    }
  });

  auto* publish = topology->add_subcommand("publish", "validate a topology file and publish it as a new CMS version");
  static std::string publish_file;
  publish->add_option("FILE", publish_file, "topology file (TOML)")->required();
  publish->callback([&connection, &as_json] {
    TopologyParseResult parsed = ValidateAndReport(publish_file);
    if (parsed.HasErrors()) Fail(fmt::format("{} is not a valid topology; nothing was published", publish_file));
    std::string text = OrFail(ReadFile(publish_file));
    json body{{"file", std::filesystem::path(publish_file).filename().string()}, {"toml", text}};
    json answer = CallJson(connection, "POST", "/cms/publish", body.dump());
    if (as_json) {
      std::printf("%s\n", answer.dump(2).c_str());
    } else {
      std::printf("Published %s as CMS version %lld.\n", publish_file.c_str(), answer["version"].get<long long>());
    }
  });

  auto* show = topology->add_subcommand("show", "show the topology of the current CMS version");
  show->callback([&connection, &as_json] {
    json answer = CallJson(connection, "GET", "/cms/document");
    auto document = CmsDocument::FromJson(answer.dump());
    if (!document) Fail("the server sent a damaged CMS document");
    TopologyParseResult parsed = ParseTopology(document->topology_toml, document->topology_file);
    if (parsed.HasErrors()) Fail("the published topology does not parse; publish a valid one");
    if (as_json) {
      json out = TopologyToJson(*parsed.topology);
      out["cms_version"] = document->version;
      out["published_at_ms"] = document->published_at_ms;
      std::printf("%s\n", out.dump(2).c_str());
      return;
    }
    const Topology& t = *parsed.topology;
    std::printf("CMS version %lld, published %s from %s\n", static_cast<long long>(document->version),
                FormatTime(document->published_at_ms).c_str(), document->topology_file.c_str());
    // The document's master moves with a CMS failover; the topology names the first one.
    const std::string& master = document->master_pool.empty() ? t.cms_master_pool : document->master_pool;
    std::printf("SIP domain %s; CMS master pool %s (epoch %lld)\n\n", t.sip_domain.c_str(), master.c_str(),
                static_cast<long long>(document->master_epoch));
    for (const PoolSpec& pool : t.pools) {
      std::printf("pool %s (site %s, %s, %s back-end%s)\n", pool.fqdn.c_str(), pool.site.c_str(),
                  std::string(EditionName(pool.edition)).c_str(), std::string(BackendTypeName(pool.backend.type)).c_str(),
                  pool.backup_pool ? fmt::format(", paired with {}", *pool.backup_pool).c_str() : "");
      for (const ServerSpec& server : pool.servers) {
        std::printf("  %-10s %s  sip %u  admin %u\n", server.id.c_str(), server.address.c_str(), server.sip_port,
                    server.admin_port);
      }
    }
  });
}

void PrintCmsStatus(const json& answer) {
  std::string master_version = answer["master_version"].is_null() ? "unknown" : answer["master_version"].dump();
  std::printf("CMS master pool %s (epoch %s): %s, version %s\n", answer["master_pool"].get<std::string>().c_str(),
              answer["master_epoch"].dump().c_str(),
              answer["master_reachable"].get<bool>() ? "reachable" : "UNREACHABLE", master_version.c_str());
  if (answer.contains("master_error")) std::printf("  (%s)\n", answer["master_error"].get<std::string>().c_str());
  std::printf("CMS standby pool: %s\n",
              answer["standby_pool"].is_null() ? "none (no backup pool)" : answer["standby_pool"].get<std::string>().c_str());
  std::printf("\n%-10s %-24s %-9s %-6s %-24s %s\n", "SERVER", "POOL", "REPLICA", "EPOCH", "SEES MASTER", "STATE");
  for (const json& server : answer["servers"]) {
    auto text = [](const json& value) { return value.is_null() ? std::string("-") : value.is_string() ? value.get<std::string>() : value.dump(); };
    std::string state = !server["reachable"].get<bool>() ? "unreachable"
                        : server["up_to_date"].is_null() ? "unknown (master unreachable)"
                        : server["up_to_date"].get<bool>() ? "up to date"
                                                           : "behind";
    if (server.contains("read_only_for_failover_to")) {
      state += ", read-only (CMS failed over to " + server["read_only_for_failover_to"].get<std::string>() + ")";
    }
    std::printf("%-10s %-24s %-9s %-6s %-24s %s\n", server["id"].get<std::string>().c_str(),
                server["pool"].get<std::string>().c_str(), text(server["replica_version"]).c_str(),
                text(server["replica_epoch"]).c_str(), text(server["sees_master"]).c_str(), state.c_str());
  }
  for (const json& pool : answer.value("divergent", json::array())) {
    std::printf("\nDIVERGENT versions kept apart in pool %s (published there after the failover point; never on the "
                "new master, not merged):\n", pool["pool"].get<std::string>().c_str());
    for (const json& version : pool["versions"]) {
      std::printf("  version %s epoch %s, published %s from %s (superseded by epoch %s)\n",
                  version["version"].dump().c_str(), version["master_epoch"].dump().c_str(),
                  FormatTime(version.value("published_at_ms", int64_t{0})).c_str(),
                  version.value("topology_file", std::string()).c_str(), version["superseded_by_epoch"].dump().c_str());
    }
  }
}

// One step of `cms failover`, for the step-by-step report.
void AddStep(json& steps, bool as_json, const std::string& what, double seconds) {
  steps.push_back({{"step", what}, {"seconds", seconds}});
  if (!as_json) std::printf("  %-60s %7.3f s\n", what.c_str(), seconds);
}

// `tandem cms failover [--force]`: check, [read-only, final sync,] promote + push.
void RunCmsFailover(const ConnectionOptions& connection, bool force, int timeout_seconds, bool as_json) {
  using Clock = std::chrono::steady_clock;
  auto since = [](Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); };
  auto started = Clock::now();
  json steps = json::array();
  auto step_start = Clock::now();
  json plan = CallJson(connection, "GET", fmt::format("/cms/failover/plan?force={}", force ? 1 : 0));
  std::string master = plan["master_pool"].get<std::string>();
  std::string standby = plan["standby_pool"].get<std::string>();
  if (!as_json) {
    std::printf("CMS failover (%s) from %s to %s:\n", force ? "forced" : "planned", master.c_str(), standby.c_str());
  }
  AddStep(steps, as_json, fmt::format("checked: {} {}, standby {} reachable", master,
                                      force ? "unreachable" : "reachable", standby),
          since(step_start));
  json promoted;
  if (!force) {
    step_start = Clock::now();
    json read_only = CallJson(connection, "POST",
                              fmt::format("/cms/failover/readonly?pool={}&action=set&standby={}", UrlEncode(master),
                                          UrlEncode(standby)));
    const json& head = read_only["head"];
    AddStep(steps, as_json, fmt::format("{} read-only for the CMS at version {}", master, head["version"].dump()),
            since(step_start));
    try {
      step_start = Clock::now();
      json sync = CallJson(connection, "POST", fmt::format("/backup/sync?pool={}&module=cms", UrlEncode(master)));
      WaitForSync(connection, master, sync["targets"], timeout_seconds, as_json);
      AddStep(steps, as_json, fmt::format("final sync: {} holds version {}", standby, head["version"].dump()),
              since(step_start));
      step_start = Clock::now();
      promoted = CallJson(connection, "POST",
                          fmt::format("/cms/failover/promote?pool={}&mode=planned&expect_version={}&expect_epoch={}",
                                      UrlEncode(standby), head["version"].dump(), head["master_epoch"].dump()));
    } catch (const CommandFailure& failure) {
      // Nothing was promoted: the master takes publishes again.
      auto target = ResolveAdminTarget(connection);
      if (target) {
        (void)CallAdmin(*target, "POST", fmt::format("/cms/failover/readonly?pool={}&action=clear", UrlEncode(master)));
      }
      Fail(fmt::format("CMS failover to {} failed: {}; {} was made writable again and remains the CMS master",
                       standby, failure.message, master));
    }
  } else {
    step_start = Clock::now();
    promoted = CallJson(connection, "POST", fmt::format("/cms/failover/promote?pool={}&mode=forced", UrlEncode(standby)));
  }
  const json& from = promoted["from"];
  AddStep(steps, as_json, fmt::format("promoted {}: version {} epoch {}", standby, promoted["promoted"]["version"].dump(),
                                      promoted["promoted"]["master_epoch"].dump()),
          promoted["promote_ms"].get<double>() / 1000.0);
  int reached = 0;
  std::vector<std::string> missed;
  for (const json& push : promoted["pushed"]) {
    if (push["ok"].get<bool>()) ++reached;
    else missed.push_back(push["server"].get<std::string>());
  }
  AddStep(steps, as_json, fmt::format("pushed to {} of {} other servers", reached, promoted["pushed"].size()),
          promoted["push_ms"].get<double>() / 1000.0);
  double total = since(started);
  if (as_json) {
    std::printf("%s\n", json{{"mode", force ? "forced" : "planned"},
                             {"old_master", master},
                             {"new_master", standby},
                             {"promoted", promoted["promoted"]},
                             {"promoted_from", from},
                             {"pushed", promoted["pushed"]},
                             {"steps", steps},
                             {"seconds", total}}
                             .dump(2)
                             .c_str());
    return;
  }
  std::printf("Pool %s is the CMS master (epoch %s) in %.2f s.\n", standby.c_str(),
              promoted["promoted"]["master_epoch"].dump().c_str(), total);
  if (force) {
    std::printf("Promoted from version %s (epoch %s), published %s. Versions published on %s after it, if any, are "
                "not included: when %s comes back it steps down and keeps them apart as divergent (`tandem cms "
                "status`).\n",
                from["version"].dump().c_str(), from["master_epoch"].dump().c_str(),
                FormatTime(from["published_at_ms"].get<int64_t>()).c_str(), master.c_str(), master.c_str());
  }
  if (!missed.empty()) {
    std::printf("Not reached by the push (they find the new master within a poll): %s\n",
                fmt::format("{}", fmt::join(missed, ", ")).c_str());
  }
}

void AddCmsCommands(CLI::App& app, ConnectionOptions& connection, bool& as_json) {
  auto* cms = app.add_subcommand("cms", "Central Management Store")->require_subcommand(1);
  auto* status = cms->add_subcommand("status", "master pool, epoch, every server's replica, divergent versions");
  status->callback([&connection, &as_json] {
    json answer = CallJson(connection, "GET", "/cms/status");
    if (as_json) {
      std::printf("%s\n", answer.dump(2).c_str());
      return;
    }
    PrintCmsStatus(answer);
  });

  auto* failover = cms->add_subcommand(
      "failover", "promote the CMS standby (the master's backup pool) to master (Invoke-CsManagementServerFailover)");
  static bool force = false;
  static int timeout_seconds = 60;
  failover->add_flag("--force", force, "the master pool is unreachable: promote the standby with what it has");
  failover->add_option("--timeout", timeout_seconds, "seconds to wait for the final sync (default 60)");
  failover->callback([&connection, &as_json] { RunCmsFailover(connection, force, timeout_seconds, as_json); });
}

std::string TrimLineEnd(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return text;
}

// Sends users of one pool in one request: the pool adds all of them or none.
void SendUsers(const ConnectionOptions& connection, const std::string& pool, const std::vector<UserRecord>& users) {
  json entries = json::array();
  for (const UserRecord& user : users) {
    json entry = UserToJson(user, /*with_secrets=*/true);
    entry.erase("pool");
    entry.erase("created_at_ms");
    entries.push_back(entry);
  }
  CallJson(connection, "POST", "/users", json{{"pool", pool}, {"users", entries}}.dump());
}

void AddUserCommands(CLI::App& app, ConnectionOptions& connection, bool& as_json) {
  auto* user = app.add_subcommand("user", "provision users (Enable-CsUser, Get-CsUser)")->require_subcommand(1);

  auto* add = user->add_subcommand("add", "provision one user in its home pool");
  static std::string add_uri, add_pool, add_password_file;
  add->add_option("URI", add_uri, "address of record, e.g. sip:alice@example.com")->required();
  add->add_option("--pool", add_pool, "FQDN of the user's home pool")->required();
  add->add_option("--password-file", add_password_file, "file holding the password (first line)")->required();
  add->callback([&connection] {
    std::string password = TrimLineEnd(OrFail(ReadFile(add_password_file)));
    password = password.substr(0, password.find('\n'));
    UserRecord record = OrFail(MakeUserRecord(add_uri, add_pool, password));
    SendUsers(connection, add_pool, {record});
    std::printf("Added %s to pool %s.\n", record.uri.c_str(), add_pool.c_str());
  });

  auto* import = user->add_subcommand("import", "provision users from a CSV file: uri,pool,password per line");
  static std::string import_file;
  import->add_option("FILE", import_file, "CSV file (a header line 'uri,pool,password' is allowed)")->required();
  import->callback([&connection] {
    std::string text = OrFail(ReadFile(import_file));
    std::map<std::string, std::vector<UserRecord>> by_pool;
    std::vector<std::string> problems;
    size_t line_number = 0, count = 0;
    size_t start = 0;
    while (start < text.size()) {
      size_t end = text.find('\n', start);
      std::string line = TrimLineEnd(text.substr(start, end == std::string::npos ? std::string::npos : end - start));
      start = end == std::string::npos ? text.size() : end + 1;
      ++line_number;
      if (line.empty() || line.starts_with('#') || (line_number == 1 && line.starts_with("uri,"))) continue;
      size_t first = line.find(','), second = first == std::string::npos ? first : line.find(',', first + 1);
      if (second == std::string::npos) {
        problems.push_back(fmt::format("{}:{}: expected uri,pool,password", import_file, line_number));
        continue;
      }
      auto record = MakeUserRecord(line.substr(0, first), line.substr(first + 1, second - first - 1), line.substr(second + 1));
      if (!record) {
        problems.push_back(fmt::format("{}:{}: {}", import_file, line_number, record.error().message));
        continue;
      }
      by_pool[record->home_pool].push_back(std::move(*record));
      ++count;
    }
    for (const std::string& problem : problems) std::fprintf(stderr, "%s\n", problem.c_str());
    if (!problems.empty()) Fail(fmt::format("{} has {} bad lines; nothing was imported", import_file, problems.size()));
    for (const auto& [pool, users] : by_pool) {
      SendUsers(connection, pool, users);
      std::printf("Added %zu users to pool %s.\n", users.size(), pool.c_str());
    }
    if (count == 0) std::printf("%s holds no users.\n", import_file.c_str());
  });

  auto* list = user->add_subcommand("list", "list provisioned users of every pool");
  list->callback([&connection, &as_json] {
    json answer = CallJson(connection, "GET", "/users");
    if (as_json) {
      std::printf("%s\n", answer.dump(2).c_str());
      return;
    }
    std::printf("%-40s %s\n", "USER", "HOME POOL");
    for (const json& user : answer["users"]) {
      std::printf("%-40s %s\n", user["uri"].get<std::string>().c_str(), user["pool"].get<std::string>().c_str());
    }
    for (const json& pool : answer["unreachable_pools"]) {
      std::fprintf(stderr, "warning: pool %s did not answer; its users are not listed\n", pool.get<std::string>().c_str());
    }
  });

  auto* remove = user->add_subcommand("remove", "remove a provisioned user");
  static std::string remove_uri;
  remove->add_option("URI", remove_uri, "address of record")->required();
  remove->callback([&connection] {
    json answer = CallJson(connection, "DELETE", "/users?uri=" + UrlEncode(remove_uri));
    std::printf("Removed %s from pool %s.\n", answer["removed"].get<std::string>().c_str(),
                answer["pool"].get<std::string>().c_str());
  });
}

void AddPoolCommands(CLI::App& app, ConnectionOptions& connection, bool& as_json) {
  auto* pool = app.add_subcommand("pool", "pools: membership, failover and failback")->require_subcommand(1);
  AddPoolFailoverCommands(*pool, connection, as_json);
  auto* status = pool->add_subcommand("status", "live servers, lease ages, routing groups and registrations");
  status->callback([&connection, &as_json] {
    json answer = CallJson(connection, "GET", "/pool/status");
    if (as_json) {
      std::printf("%s\n", answer.dump(2).c_str());
      return;
    }
    for (const json& pool_status : answer["pools"]) {
      std::string fqdn = pool_status["pool"].get<std::string>();
      if (pool_status.value("unreachable", false)) {
        std::printf("pool %s: UNREACHABLE\n\n", fqdn.c_str());
        continue;
      }
      std::printf("pool %s: %d live servers\n", fqdn.c_str(), pool_status["live_servers"].get<int>());
      std::printf("  %-10s %-6s %-10s %-7s %s\n", "SERVER", "LIVE", "LEASE AGE", "GROUPS", "REGISTERED USERS");
      for (const json& server : pool_status["servers"]) {
        std::string users = server["registered_users"].is_null() ? "-" : server["registered_users"].dump();
        std::printf("  %-10s %-6s %-10.1f %-7d %s\n", server["id"].get<std::string>().c_str(),
                    server["live"].get<bool>() ? "yes" : "no", server["lease_age_seconds"].get<double>(),
                    server["groups"].get<int>(), users.c_str());
      }
      // Resiliency mode is decided by each server: say which ones serve the partner's users.
      std::vector<std::string> resilient;
      std::string partner;
      for (const json& server : pool_status["servers"]) {
        if (server.contains("resiliency") && server["resiliency"].value("mode", "") == "resiliency") {
          resilient.push_back(server["id"].get<std::string>());
          partner = server["resiliency"]["partner"].get<std::string>();
        }
      }
      if (!resilient.empty()) {
        std::printf("  RESILIENCY MODE on %s: pool %s is unreachable; its users are served here with limited "
                    "function (registration, IM, presence; persistent changes refused)\n",
                    fmt::format("{}", fmt::join(resilient, ", ")).c_str(), partner.c_str());
      }
      std::printf("\n");
    }
  });
}

void AddBackendCommands(CLI::App& app, ConnectionOptions& connection, bool& as_json) {
  auto* backend = app.add_subcommand("backend", "back-end databases: status and failover")->require_subcommand(1);
  auto* status = backend->add_subcommand("status", "primary, standby, synchronous state and replay lag");
  static std::string status_pool;
  status->add_option("--pool", status_pool, "only this pool");
  status->callback([&connection, &as_json] {
    json answer = CallJson(connection, "GET", "/backend/status" + (status_pool.empty() ? "" : "?pool=" + UrlEncode(status_pool)));
    if (as_json) {
      std::printf("%s\n", answer.dump(2).c_str());
      return;
    }
    for (const json& pool : answer["pools"]) {
      std::printf("pool %s: %s back-end\n", pool["pool"].get<std::string>().c_str(),
                  pool["backend"].get<std::string>().c_str());
      if (!pool.contains("servers")) continue;
      for (const json& server : pool["servers"]) {
        std::printf("  %-24s %s\n", server["server"].get<std::string>().c_str(),
                    server["role"].get<std::string>().c_str());
      }
      std::printf("  synchronous standby: %s; replay lag: %s s\n",
                  pool["synchronous"].is_null() ? "unknown" : (pool["synchronous"].get<bool>() ? "yes" : "NO"),
                  pool["replay_lag_seconds"].is_null() ? "-" : pool["replay_lag_seconds"].dump().c_str());
    }
  });
  auto* failover = backend->add_subcommand("failover", "promote the pool's synchronous standby (primary lost)");
  static std::string failover_pool;
  failover->add_option("--pool", failover_pool, "FQDN of the pool")->required();
  failover->callback([&connection, &as_json] {
    json answer = CallJson(connection, "POST", "/backend/failover?pool=" + UrlEncode(failover_pool));
    if (as_json) {
      std::printf("%s\n", answer.dump(2).c_str());
      return;
    }
    std::printf("Promoted %s for pool %s in %.2f s; servers reconnect by themselves.\n",
                answer["promoted"].get<std::string>().c_str(), failover_pool.c_str(), answer["seconds"].get<double>());
  });
}

void AddLauncherCommands(CLI::App& app, ConnectionOptions& connection) {
  auto* up = app.add_subcommand("up", "start every server of a topology on this machine");
  static UpOptions up_options;
  static int timeout_seconds = 30;
  up->add_option("FILE", up_options.topology_path, "topology file (TOML)")->required();
  up->add_flag("--detach,-d", up_options.detach, "return once every server is healthy");
  up->add_option("--timeout", timeout_seconds, "seconds to wait for the servers to become healthy");
  up->callback([&connection] {
    up_options.data_dir = connection.data_dir;
    up_options.start_timeout = std::chrono::seconds(timeout_seconds);
    OrFail(Up(up_options));
  });

  auto* down = app.add_subcommand("down", "stop the servers that `tandem up` started");
  down->callback([&connection] { OrFail(Down(connection.data_dir)); });
}

}  // namespace

int RunCli(int argc, char** argv, const std::vector<CommandAdder>& more_commands) {
  CLI::App app{"tandem: manage a tandem deployment (topology, CMS, servers)"};
  app.require_subcommand(1);
  ConnectionOptions connection;
  const char* env_data_dir = std::getenv("TANDEM_DATA_DIR");
  connection.data_dir = env_data_dir && *env_data_dir ? env_data_dir : "./tandem-data";
  bool as_json = false;
  app.add_option("--data-dir", connection.data_dir, "data directory written by `tandem up` (or $TANDEM_DATA_DIR)")
      ->configurable();
  app.add_option("--admin", connection.admin_url, "admin URL of a running server, e.g. http://127.0.0.1:8101");
  app.add_option("--token-file", connection.token_file, "admin token file (with --admin)");
  app.add_flag("--json", as_json, "machine-readable output");
  app.fallthrough();

  AddTopologyCommands(app, connection, as_json);
  AddCmsCommands(app, connection, as_json);
  AddUserCommands(app, connection, as_json);
  AddUserDataCommands(app, connection, as_json);  // adds to the `user` command: after AddUserCommands
  AddMeetingCommands(app, connection, as_json);
  AddPoolCommands(app, connection, as_json);
  AddBackendCommands(app, connection, as_json);
  AddBackupCommands(app, connection, as_json);
  AddLauncherCommands(app, connection);
  for (CommandAdder add : more_commands) add(app, connection, as_json);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const CommandFailure& failure) {
    std::fflush(stdout);
    std::fprintf(stderr, "tandem: %s\n", failure.message.c_str());
    return failure.exit_code;
  }
  return 0;
}

}  // namespace tandem
