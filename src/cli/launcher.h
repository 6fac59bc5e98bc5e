// `tandem up` and `tandem down`: start every server of a topology on this machine
// as tandemd processes, wait until they are healthy, record them in the data dir,
// and stop them again by recorded PID.
//
// Thread-safety: meant for the CLI's main thread only (it changes signal masks).
#pragma once

#include <chrono>
#include <cstdio>
#include <string>

#include "common/error.h"

namespace tandem {

struct UpOptions {
  std::string topology_path;
  std::string data_dir;
  bool detach = false;  // return once healthy, leaving the servers running
  std::chrono::seconds start_timeout{30};
  std::string tandemd_path;  // default: beside the running tandem binary
};

// Starts the servers. In the foreground, runs until SIGINT/SIGTERM (then stops them
// all) or until every server has exited. If any server fails to start, stops the
// ones it started and returns the reason.
Status Up(const UpOptions& options);

// Stops the servers recorded in the data dir (SIGTERM, then SIGKILL after
// `grace`). Succeeds, saying so, when nothing is running.
Status Down(const std::string& data_dir, std::chrono::seconds grace = std::chrono::seconds(10));

}  // namespace tandem
