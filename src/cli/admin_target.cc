#include "cli/admin_target.h"

#include <fmt/format.h>

#include "admin/http_client.h"
#include "common/file_util.h"

namespace tandem {

using nlohmann::json;

std::string LaunchStatePath(const std::string& data_dir) { return data_dir + "/up.json"; }

json LaunchState::ToJson() const {
  json servers_json = json::array();
  for (const LaunchedServer& server : servers) {
    servers_json.push_back({{"id", server.id},
                            {"pool", server.pool},
                            {"pid", server.pid},
                            {"admin_url", server.admin_url},
                            {"sip", server.sip_endpoint},
                            {"log", server.log_path}});
  }
  return {{"topology", topology_path}, {"token_file", token_file}, {"launcher_pid", launcher_pid},
          {"servers", servers_json}};
}

Result<LaunchState> LaunchState::FromJson(const std::string& text) {
  auto parsed = json::parse(text, nullptr, false);
  auto bad = [] { return MakeError(ErrorCode::kCorruption, "the launch state file is damaged"); };
  if (!parsed.is_object() || !parsed.contains("servers") || !parsed["servers"].is_array()) return bad();
  LaunchState state;
  state.topology_path = parsed.value("topology", "");
  state.token_file = parsed.value("token_file", "");
  state.launcher_pid = parsed.value("launcher_pid", 0);
  for (const json& entry : parsed["servers"]) {
    if (!entry.is_object()) return bad();
    state.servers.push_back(LaunchedServer{entry.value("id", ""), entry.value("pool", ""), entry.value("pid", 0),
                                           entry.value("admin_url", ""), entry.value("sip", ""),
                                           entry.value("log", "")});
  }
  return state;
}

Result<LaunchState> ReadLaunchState(const std::string& data_dir) {
  auto text = ReadFile(LaunchStatePath(data_dir));
  if (!text) {
    if (text.error().code == ErrorCode::kNotFound) {
      return MakeError(ErrorCode::kNotFound,
                       fmt::format("nothing is running from {} (no up.json); start it with `tandem up TOPOLOGY "
                                   "--data-dir {}` or name a server with --admin URL --token-file FILE",
                                   data_dir, data_dir));
    }
    return std::unexpected(text.error());
  }
  auto state = LaunchState::FromJson(*text);
  if (!state) {
    return MakeError(ErrorCode::kCorruption, fmt::format("{} is damaged; run `tandem down --data-dir {}` and start again",
                                                         LaunchStatePath(data_dir), data_dir));
  }
  return state;
}

Result<AdminTarget> ResolveAdminTarget(const ConnectionOptions& options) {
  AdminTarget target;
  std::string token_file = options.token_file;
  if (!options.admin_url.empty()) {
    target.base_urls.push_back(options.admin_url);
    while (!target.base_urls.back().empty() && target.base_urls.back().back() == '/') target.base_urls.back().pop_back();
    if (token_file.empty()) token_file = options.data_dir + "/admin.token";
  } else {
    auto state = ReadLaunchState(options.data_dir);
    if (!state) return std::unexpected(state.error());
    for (const LaunchedServer& server : state->servers) target.base_urls.push_back(server.admin_url);
    if (token_file.empty()) token_file = state->token_file;
  }
  auto token = ReadFile(token_file);
  if (!token) {
    return MakeError(token.error().code, fmt::format("cannot read the admin token: {}; pass --token-file FILE",
                                                     token.error().message));
  }
  target.token = *token;
  while (!target.token.empty() && (target.token.back() == '\n' || target.token.back() == ' ')) target.token.pop_back();
  return target;
}

Result<HttpResponse> CallAdmin(const AdminTarget& target, std::string_view method, std::string_view path,
                               std::string_view body) {
  std::string last_error = "no server to ask";
  for (const std::string& base : target.base_urls) {
    // A hung server (stopped, overloaded) would hold the command for the whole call
    // timeout: ask it for /health briefly first, and move on when it does not answer.
    if (target.base_urls.size() > 1) {
      auto health = HttpCall("GET", base + "/health", "", {.timeout = std::chrono::seconds(2)});
      if (!health) {
        last_error = health.error().message;
        continue;
      }
    }
    auto response = HttpCall(method, base + std::string(path), body,
                             {.token = target.token, .timeout = std::chrono::seconds(30)});
    if (response) return response;
    last_error = response.error().message;
  }
  return MakeError(ErrorCode::kUnavailable,
                   fmt::format("no tandem server answered ({}); check that the servers are running (`tandem up`)",
                               last_error));
}

std::string AdminErrorMessage(const HttpResponse& response) {
  auto parsed = json::parse(response.body, nullptr, false);
  if (parsed.is_object() && parsed.contains("error") && parsed["error"].is_string()) {
    return parsed["error"].get<std::string>();
  }
  return fmt::format("the server answered HTTP {}", response.status);
}

}  // namespace tandem
