#include "cli/launcher.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <thread>

#include <fmt/format.h>

#include "admin/http_client.h"
#include "backup/pairing.h"
#include "cli/admin_target.h"
#include "common/file_util.h"
#include "server/server.h"
#include "topology/topology.h"

namespace tandem {
namespace {

using SteadyClock = std::chrono::steady_clock;
constexpr auto kPollInterval = std::chrono::milliseconds(50);

std::string DefaultTandemdPath() {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    auto beside = self.parent_path() / "tandemd";
    if (std::filesystem::exists(beside)) return beside.string();
  }
  return "tandemd";  // from PATH
}

bool IsAlive(int pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM); }

// True if `pid` still runs tandemd for `server_id`: a recycled PID is never signalled.
bool IsOurServer(int pid, const std::string& server_id) {
  auto cmdline = ReadFile(fmt::format("/proc/{}/cmdline", pid));
  if (!cmdline) return false;
  std::string args = *cmdline;
  std::replace(args.begin(), args.end(), '\0', ' ');
  return args.find("tandemd") != std::string::npos && args.find(" " + server_id + " ") != std::string::npos;
}

std::string LastLogLine(const std::string& log_path) {
  auto text = ReadFile(log_path);
  if (!text || text->empty()) return "it printed nothing";
  std::string_view view(*text);
  while (!view.empty() && view.back() == '\n') view.remove_suffix(1);
  auto newline = view.rfind('\n');
  std::string_view line = newline == std::string_view::npos ? view : view.substr(newline + 1);
  constexpr std::string_view kPrefix = "tandemd: ";
  if (line.starts_with(kPrefix)) line.remove_prefix(kPrefix.size());
  return std::string(line);
}

// Sends SIGTERM to every live server, waits up to `grace`, then SIGKILLs the rest.
// Reaps children when they are ours. Returns how many needed SIGKILL.
int StopServers(const std::vector<LaunchedServer>& servers, std::chrono::seconds grace, bool are_children) {
  for (const LaunchedServer& server : servers) {
    if (IsAlive(server.pid) && (are_children || IsOurServer(server.pid, server.id))) ::kill(server.pid, SIGTERM);
  }
  auto deadline = SteadyClock::now() + grace;
  auto any_alive = [&] {
    bool alive = false;
    for (const LaunchedServer& server : servers) {
      if (are_children) ::waitpid(server.pid, nullptr, WNOHANG);
      alive |= IsAlive(server.pid) && (are_children || IsOurServer(server.pid, server.id));
    }
    return alive;
  };
  while (any_alive() && SteadyClock::now() < deadline) std::this_thread::sleep_for(kPollInterval);
  int killed = 0;
  for (const LaunchedServer& server : servers) {
    if (IsAlive(server.pid) && (are_children || IsOurServer(server.pid, server.id))) {
      std::fprintf(stderr, "tandem: server %s (pid %d) did not stop within %llds; killing it\n", server.id.c_str(),
                   server.pid, static_cast<long long>(grace.count()));
      ::kill(server.pid, SIGKILL);
      ++killed;
      if (are_children) ::waitpid(server.pid, nullptr, 0);
    }
  }
  return killed;
}

Result<int> SpawnServer(const std::string& tandemd, const std::string& topology, const ServerSpec& server,
                        const std::string& data_dir, const std::string& token_file, const std::string& log_path,
                        bool die_with_parent) {
  int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return MakeError(ErrorCode::kIoError, fmt::format("cannot open log {}: {}", log_path, std::strerror(errno)));
  int parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(log_fd);
    return MakeError(ErrorCode::kIoError, fmt::format("fork failed: {}", std::strerror(errno)));
  }
  if (pid == 0) {
    // Own process group: a terminal's Ctrl-C reaches `tandem up`, which stops the
    // servers in order, rather than every process at once.
    ::setpgid(0, 0);
    if (die_with_parent) {
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(1);  // the parent died before prctl took effect
    }
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    int null_fd = ::open("/dev/null", O_RDONLY);
    ::dup2(null_fd, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    std::vector<std::string> args = {tandemd, "--topology", topology, "--server", server.id,
                                     "--data-dir", data_dir, "--token-file", token_file};
    std::vector<char*> argv;
    for (auto& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    std::fprintf(stderr, "tandemd: cannot run %s: %s\n", tandemd.c_str(), std::strerror(errno));
    ::_exit(127);
  }
  ::close(log_fd);
  return pid;
}

// Progress goes to `out` unless it is null (`tandem drill --json` keeps stdout for its JSON).
template <typename... Args>
void Say(std::FILE* out, fmt::format_string<Args...> format, Args&&... args) {
  if (out == nullptr) return;
  fmt::print(out, format, std::forward<Args>(args)...);
  std::fflush(out);
}

void PrintTable(std::FILE* out, const std::vector<LaunchedServer>& servers) {
  Say(out, "\n{:<10} {:<24} {:<22} {:<28} {}\n", "SERVER", "POOL", "SIP", "ADMIN", "PID");
  for (const LaunchedServer& server : servers) {
    Say(out, "{:<10} {:<24} {:<22} {:<28} {}\n", server.id, server.pool, server.sip_endpoint, server.admin_url,
        server.pid);
  }
}

// Waits until every server of `servers` (children of this process) answers
// /health, noticing one that exits instead. The caller blocked `waited`: SIGINT,
// SIGTERM or SIGHUP end the wait. On failure the servers are left as they are.
Status WaitUntilHealthy(const std::vector<LaunchedServer>& servers, std::chrono::seconds timeout,
                        const sigset_t& waited, std::FILE* out) {
  auto started = SteadyClock::now();
  std::map<std::string, bool> healthy;
  while (healthy.size() < servers.size()) {
    for (const LaunchedServer& server : servers) {
      if (healthy.contains(server.id)) continue;
      int status = 0;
      if (::waitpid(server.pid, &status, WNOHANG) == server.pid) {
        return MakeError(ErrorCode::kUnavailable, fmt::format("server {} of pool {} could not start: {} (log: {})",
                                                              server.id, server.pool, LastLogLine(server.log_path),
                                                              server.log_path));
      }
      auto response = HttpCall("GET", server.admin_url + "/health", "", {.timeout = std::chrono::milliseconds(500)});
      if (response && response->status == 200) {
        healthy[server.id] = true;
        Say(out, "  {:<10} {:<24} healthy after {:.1f} s\n", server.id, server.pool,
            std::chrono::duration<double>(SteadyClock::now() - started).count());
      }
    }
    if (healthy.size() < servers.size()) {
      if (SteadyClock::now() - started > timeout) {
        for (const LaunchedServer& server : servers) {
          if (!healthy.contains(server.id)) {
            return MakeError(ErrorCode::kTimeout, fmt::format("server {} did not become healthy within {} s (log: {})",
                                                              server.id, timeout.count(), server.log_path));
          }
        }
      }
      // Sleep until the next poll unless a signal (child exit, Ctrl-C) arrives first.
      timespec pause{0, std::chrono::duration_cast<std::chrono::nanoseconds>(kPollInterval).count()};
      int signal = ::sigtimedwait(&waited, nullptr, &pause);
      if (signal == SIGINT || signal == SIGTERM || signal == SIGHUP) {
        return MakeError(ErrorCode::kFailedPrecondition, "interrupted while starting");
      }
    }
  }
  return OkStatus();
}

// The signals a launcher waits for, blocked before forking so none is lost in between.
sigset_t BlockLauncherSignals() {
  sigset_t waited;
  sigemptyset(&waited);
  sigaddset(&waited, SIGINT);
  sigaddset(&waited, SIGTERM);
  sigaddset(&waited, SIGCHLD);
  sigaddset(&waited, SIGHUP);
  ::sigprocmask(SIG_BLOCK, &waited, nullptr);
  return waited;
}

}  // namespace

Status Up(const UpOptions& options) {
  TopologyParseResult parsed = LoadTopologyFile(options.topology_path);
  for (const Diagnostic& diagnostic : parsed.diagnostics) std::fprintf(stderr, "%s\n", diagnostic.ToString().c_str());
  if (parsed.HasErrors()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("{} is not a valid topology; nothing was started", options.topology_path));
  }
  const Topology& topology = *parsed.topology;
  std::string data_dir = std::filesystem::absolute(options.data_dir).lexically_normal().string();
  std::string topology_path = std::filesystem::absolute(options.topology_path).lexically_normal().string();
  if (auto made = MakeDirectories(data_dir); !made) return made;

  if (auto previous = ReadLaunchState(data_dir); previous) {
    for (const LaunchedServer& server : previous->servers) {
      if (IsAlive(server.pid) && IsOurServer(server.pid, server.id)) {
        return MakeError(ErrorCode::kFailedPrecondition,
                         fmt::format("tandem is already running from {} (server {} has pid {}); run `tandem down "
                                     "--data-dir {}` first",
                                     data_dir, server.id, server.pid, data_dir));
      }
    }
  }

  std::string token_file = data_dir + "/admin.token";
  std::string token = GenerateAdminToken();
  if (auto written = WriteFileAtomically(token_file, token + "\n", 0600); !written) return written;
  // Paired pools authenticate their Backup Service link with a secret of their own,
  // kept across restarts; created here so servers starting at once agree on it.
  for (const PoolSpec& pool : topology.pools) {
    if (!pool.backup_pool) continue;
    if (auto secret = LoadOrCreatePairingSecret(data_dir, pool.fqdn, *pool.backup_pool); !secret) {
      return std::unexpected(secret.error());
    }
  }

  sigset_t waited = BlockLauncherSignals();

  LaunchState state;
  state.topology_path = topology_path;
  state.token_file = token_file;
  state.launcher_pid = options.detach ? 0 : ::getpid();
  std::string tandemd = options.tandemd_path.empty() ? DefaultTandemdPath() : options.tandemd_path;
  auto fail = [&](Error error) -> Status {
    StopServers(state.servers, std::chrono::seconds(5), /*are_children=*/true);
    std::filesystem::remove(LaunchStatePath(data_dir));
    ::sigprocmask(SIG_UNBLOCK, &waited, nullptr);
    return std::unexpected(std::move(error));
  };

  FILE* out = options.out;
  Say(out, "Starting {} from {} (data dir {})\n",
      topology.pools.size() == 1 ? "1 pool" : fmt::format("{} pools", topology.pools.size()), options.topology_path,
      data_dir);
  for (const PoolSpec& pool : topology.pools) {
    for (const ServerSpec& server : pool.servers) {
      std::string server_dir = ServerDirectory(data_dir, server.id);
      if (auto made = MakeDirectories(server_dir); !made) return fail(made.error());
      std::string log_path = server_dir + "/tandemd.log";
      auto pid = SpawnServer(tandemd, topology_path, server, data_dir, token_file, log_path,
                             !options.detach || options.stop_with_caller);
      if (!pid) return fail(pid.error());
      state.servers.push_back(LaunchedServer{server.id, pool.fqdn, *pid, HttpBaseUrl(server.address, server.admin_port),
                                             fmt::format("{}:{}", server.address, server.sip_port), log_path});
    }
  }
  if (auto written = WriteFileAtomically(LaunchStatePath(data_dir), state.ToJson().dump(2) + "\n"); !written) {
    return fail(written.error());
  }

  if (auto healthy = WaitUntilHealthy(state.servers, options.start_timeout, waited, out); !healthy) {
    Error error = healthy.error();
    error.message += error.code == ErrorCode::kFailedPrecondition ? "; every server was stopped"
                                                                  : "; nothing was left running";
    return fail(std::move(error));
  }
  PrintTable(out, state.servers);
  Say(out, "\nAdmin token: {} (owner-only). Logs: {}/servers/<id>/tandemd.log\n", token_file, data_dir);

  if (options.detach) {
    Say(out, "Running in the background. Stop with: tandem down --data-dir {}\n", data_dir);
    ::sigprocmask(SIG_UNBLOCK, &waited, nullptr);
    return OkStatus();
  }
  Say(out, "Running. Stop with Ctrl-C here, or `tandem down --data-dir {}` elsewhere.\n", data_dir);

  // Supervise: stop everything on a signal; leave when every server has exited.
  size_t running = state.servers.size();
  while (running > 0) {
    int signal = ::sigwaitinfo(&waited, nullptr);
    if (signal == SIGINT || signal == SIGTERM || signal == SIGHUP) {
      Say(out, "Stopping {} servers...\n", running);
      StopServers(state.servers, std::chrono::seconds(10), /*are_children=*/true);
      break;
    }
    if (signal == SIGCHLD) {
      int status = 0;
      pid_t pid;
      while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
        for (const LaunchedServer& server : state.servers) {
          if (server.pid != pid) continue;
          --running;
          std::string how = WIFEXITED(status) ? fmt::format("exited with status {}", WEXITSTATUS(status))
                                              : fmt::format("was killed by signal {}", WTERMSIG(status));
          Say(out, "server {} {}; {} still running\n", server.id, how, running);
        }
      }
    }
  }
  std::filesystem::remove(LaunchStatePath(data_dir));
  Say(out, "All servers stopped.\n");
  return OkStatus();
}

Status Down(const std::string& data_dir, std::chrono::seconds grace, std::FILE* out) {
  auto state = ReadLaunchState(data_dir);
  if (!state) {
    if (state.error().code == ErrorCode::kNotFound) {
      Say(out, "Nothing is running from {}.\n", data_dir);
      return OkStatus();
    }
    return std::unexpected(state.error());
  }
  size_t live = 0;
  for (const LaunchedServer& server : state->servers) live += IsAlive(server.pid) && IsOurServer(server.pid, server.id);
  int killed = StopServers(state->servers, grace, /*are_children=*/false);
  // A foreground `tandem up` notices its servers are gone and exits by itself.
  std::filesystem::remove(LaunchStatePath(data_dir));
  Say(out, "Stopped {} server{}{}.\n", live, live == 1 ? "" : "s",
      killed ? fmt::format(" ({} had to be killed)", killed) : "");
  return OkStatus();
}

Status StartAgain(const std::string& data_dir, const std::vector<std::string>& server_ids,
                  std::chrono::seconds start_timeout, bool stop_with_caller, std::FILE* out) {
  auto state = ReadLaunchState(data_dir);
  if (!state) return std::unexpected(state.error());
  TopologyParseResult parsed = LoadTopologyFile(state->topology_path);
  if (parsed.HasErrors()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("{} (the topology the servers were started with) is not valid any more",
                                 state->topology_path));
  }
  std::string tandemd = DefaultTandemdPath();
  sigset_t waited = BlockLauncherSignals();
  std::vector<LaunchedServer> started;
  auto fail = [&](Error error) -> Status {
    StopServers(started, std::chrono::seconds(5), /*are_children=*/true);
    ::sigprocmask(SIG_UNBLOCK, &waited, nullptr);
    return std::unexpected(std::move(error));
  };
  for (const std::string& id : server_ids) {
    auto recorded = std::find_if(state->servers.begin(), state->servers.end(),
                                 [&](const LaunchedServer& server) { return server.id == id; });
    const ServerSpec* spec = parsed.topology->FindServer(id);
    if (recorded == state->servers.end() || spec == nullptr) {
      return fail(Error{ErrorCode::kNotFound, fmt::format("server {} was not started from {}", id, data_dir)});
    }
    if (IsAlive(recorded->pid) && IsOurServer(recorded->pid, id)) {
      return fail(Error{ErrorCode::kFailedPrecondition,
                        fmt::format("server {} still runs (pid {}); it is not started twice", id, recorded->pid)});
    }
    if (auto made = MakeDirectories(ServerDirectory(data_dir, id)); !made) return fail(made.error());
    auto pid = SpawnServer(tandemd, state->topology_path, *spec, data_dir, state->token_file, recorded->log_path,
                           stop_with_caller);
    if (!pid) return fail(pid.error());
    recorded->pid = *pid;
    started.push_back(*recorded);
  }
  if (auto written = WriteFileAtomically(LaunchStatePath(data_dir), state->ToJson().dump(2) + "\n"); !written) {
    return fail(written.error());
  }
  if (auto healthy = WaitUntilHealthy(started, start_timeout, waited, out); !healthy) {
    Error error = healthy.error();
    error.message += "; the servers started again were stopped";
    return fail(std::move(error));
  }
  ::sigprocmask(SIG_UNBLOCK, &waited, nullptr);
  return OkStatus();
}

}  // namespace tandem
