// `tandem up` and `tandem down`: start every server of a topology on this machine
// as tandemd processes, wait until they are healthy, record them in the data dir,
// and stop them again by recorded PID.
//
// Thread-safety: meant for the CLI's main thread only (it changes signal masks).
#pragma once

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "common/error.h"

namespace tandem {

struct UpOptions {
  std::string topology_path;
  std::string data_dir;
  bool detach = false;  // return once healthy, leaving the servers running
  std::chrono::seconds start_timeout{30};
  std::string tandemd_path;  // default: beside the running tandem binary
  // With `detach`: the servers still get SIGTERM when the calling process dies (a
  // `tandem drill` leaves nothing behind, even when killed).
  bool stop_with_caller = false;
  std::FILE* out = stdout;  // progress and the server table; nullptr: silent
};

// Starts the servers. In the foreground, runs until SIGINT/SIGTERM (then stops them
// all) or until every server has exited. If any server fails to start, stops the
// ones it started and returns the reason.
Status Up(const UpOptions& options);

// Stops the servers recorded in the data dir (SIGTERM, then SIGKILL after
// `grace`). Succeeds, saying so, when nothing is running.
Status Down(const std::string& data_dir, std::chrono::seconds grace = std::chrono::seconds(10), std::FILE* out = stdout);

// Starts again the named servers of a running launch (recorded in `data_dir`), with
// the topology and token recorded there, after they died (a lost site coming back);
// waits until each is healthy and records the new PIDs. Refuses a server that still
// runs. If one fails to start, stops the ones it started and returns the reason.
// `stop_with_caller` and `out` as in UpOptions.
Status StartAgain(const std::string& data_dir, const std::vector<std::string>& server_ids,
                  std::chrono::seconds start_timeout, bool stop_with_caller, std::FILE* out = stdout);

}  // namespace tandem
