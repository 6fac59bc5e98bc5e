// How the CLI reaches a running system: either the data directory `tandem up`
// wrote (its state file lists every server's admin URL; the token file sits beside
// it) or an explicit --admin URL with --token-file.
//
// Thread-safety: value types and free functions.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "admin/http_server.h"
#include "common/error.h"

namespace tandem {

struct ConnectionOptions {
  std::string data_dir;    // --data-dir, $TANDEM_DATA_DIR or ./tandem-data
  std::string admin_url;   // --admin
  std::string token_file;  // --token-file
};

// One server started by `tandem up`, as recorded in <data_dir>/up.json.
struct LaunchedServer {
  std::string id;
  std::string pool;
  int pid = 0;
  std::string admin_url;
  std::string sip_endpoint;
  std::string log_path;
};

struct LaunchState {
  std::string topology_path;
  std::string token_file;
  int launcher_pid = 0;  // the `tandem up` process, while it runs in the foreground
  std::vector<LaunchedServer> servers;

  nlohmann::json ToJson() const;
  static Result<LaunchState> FromJson(const std::string& text);
};

std::string LaunchStatePath(const std::string& data_dir);
// kNotFound when nothing was launched from `data_dir`.
Result<LaunchState> ReadLaunchState(const std::string& data_dir);

struct AdminTarget {
  std::vector<std::string> base_urls;  // tried in order until one answers
  std::string token;
};

Result<AdminTarget> ResolveAdminTarget(const ConnectionOptions& options);

// Sends the request to the first server that answers. Transport failures move on to
// the next server; an HTTP error status is returned as is.
Result<HttpResponse> CallAdmin(const AdminTarget& target, std::string_view method, std::string_view path,
                               std::string_view body = "");

// The {"error": ...} message of a failed admin call, or the status code.
std::string AdminErrorMessage(const HttpResponse& response);

}  // namespace tandem
