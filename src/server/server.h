// One tandem Front End server (the tandemd process): loads its view of the
// deployment from the CMS replica (or the topology file on first start), opens its
// pool's back-end store, runs the CMS agent and serves the admin HTTP API.
//
// Thread-safety: Start() and Run() are called from the main thread; Stop() may be
// called from any thread (and is, from the signal handler's strand).
#pragma once

#include <memory>
#include <string>

#include "common/error.h"

namespace tandem {

struct ServerOptions {
  std::string topology_path;
  std::string server_id;
  std::string data_dir;    // shared by all servers started on this host
  std::string token_file;  // default: <data_dir>/admin.token
};

class Server {
 public:
  // Binds every port and opens every resource, or fails with one sentence saying
  // what and why (port taken, bad back-end path, server not in the topology...).
  static Result<std::unique_ptr<Server>> Start(const ServerOptions& options);
  virtual ~Server() = default;

  // Serves until Stop() or SIGTERM/SIGINT, then shuts down cleanly.
  virtual void Run() = 0;
  virtual void Stop() = 0;
};

// The per-server directory (<data_dir>/servers/<id>): replica, log.
std::string ServerDirectory(const std::string& data_dir, const std::string& server_id);

// Reads the admin token file, creating it with a fresh random token (mode 0600) if
// it does not exist.
Result<std::string> LoadOrCreateAdminToken(const std::string& path);
// A fresh random token: 32 bytes from the OS, hex-encoded.
std::string GenerateAdminToken();

}  // namespace tandem
