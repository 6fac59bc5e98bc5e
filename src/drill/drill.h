// `tandem drill`: a disaster-recovery drill of a two-pool paired topology, run on
// this machine in a fresh data dir. It starts the deployment (cli/launcher.h),
// provisions users in both pools, registers a phone per user (drill/phone_fleet.h)
// and checks MESSAGEs between the pools, writes contact lists continuously through
// the admin API, then loses one pool entirely (kill -9 of its servers, its store and
// its servers' directories deleted), fails the CMS over if that pool was the master,
// fails the pool over in disaster mode, brings it back empty, fails it back, and
// verifies. Every operator step is the real `tandem` command run as a child process,
// so its output and timings are the ones an operator sees.
//
// Measured: RPO (acknowledged writes lost, against the bound the failover command
// reported), RTO (failover command started -> every user of the lost pool registered
// with its backup pool and answering a MESSAGE), failback time (failback command
// started -> every such user served by its home pool again and answering).
//
// Thread-safety: call from the CLI's main thread (it starts and stops processes).
#pragma once

#include <chrono>
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace tandem {

struct DrillOptions {
  std::string topology_path;
  std::string data_dir;  // empty: a fresh directory under $TMPDIR, removed after a passing drill
  int users = 100;       // per pool
  std::chrono::seconds step_timeout{300};       // the most any one step may take
  std::chrono::milliseconds client_retry{1000};  // a phone's pause between registration rounds
  std::FILE* out = stdout;                       // progress; nullptr: silent
};

// Runs the drill and returns its report ("passed" says whether every check held;
// "failure" names the step that could not be completed). An Error means the drill
// did not start: the topology is not two paired pools, its ports are busy, the data
// dir is not empty. Everything the drill started is stopped before it returns.
Result<nlohmann::json> RunDrill(const DrillOptions& options);

// The report as text, for people.
std::string FormatDrillReport(const nlohmann::json& report);

}  // namespace tandem
