#include "cli/drill_command.h"

#include <cstdio>

#include <fmt/format.h>

#include "cli/command_util.h"
#include "drill/drill.h"

namespace tandem {

void AddDrillCommand(CLI::App& app, ConnectionOptions& connection, bool& as_json) {
  auto* drill = app.add_subcommand(
      "drill", "DR drill on this machine: lose a pool, fail over and back, report RPO, RTO and failback time");
  static DrillOptions options;
  static std::string topology = "examples/two-sites.toml";
  static int step_timeout = 300;
  static double client_retry = 1.0;
  drill->add_option("TOPOLOGY", topology, "two paired pools (default examples/two-sites.toml)");
  drill->add_option("--users", options.users, "users per pool (default 100)")->check(CLI::Range(1, 1000000));
  drill->add_option("--step-timeout", step_timeout, "seconds any one step may take (default 300)");
  drill->add_option("--client-retry", client_retry, "seconds a phone waits between registration rounds (default 1)");
  drill->callback([&app, &connection, &as_json] {
    options.topology_path = topology;
    // A data dir only when named explicitly: the drill deletes a pool's store in it.
    if (app.get_option("--data-dir")->count() > 0) options.data_dir = connection.data_dir;
    options.step_timeout = std::chrono::seconds(step_timeout);
    options.client_retry = std::chrono::milliseconds(static_cast<int64_t>(client_retry * 1000));
    options.out = as_json ? stderr : stdout;
    nlohmann::json report = OrFail(RunDrill(options));
    if (as_json) {
      std::printf("%s\n", report.dump(2).c_str());
    } else {
      std::printf("%s", FormatDrillReport(report).c_str());
    }
    std::fflush(stdout);
    if (!report.value("passed", false)) {
      Fail(report.contains("failure")
               ? fmt::format("the drill failed at {}", report["failure"].get<std::string>())
               : fmt::format("the drill ran but {} check(s) failed; see the report", report["failed_checks"].size()));
    }
  });
}

}  // namespace tandem
