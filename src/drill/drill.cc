#include "drill/drill.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "admin/http_client.h"
#include "cli/admin_target.h"
#include "cli/launcher.h"
#include "common/clock.h"
#include "common/file_util.h"
#include "drill/loss_accounting.h"
#include "drill/phone_fleet.h"
#include "server/server.h"
#include "topology/topology.h"

namespace tandem {
namespace {

using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

// The drill's clock and a server's are read a few milliseconds apart.
constexpr int64_t kBoundToleranceMs = 100;
// Contact lists are written for at most this many users (each is read back).
constexpr size_t kMaxWrittenUsers = 200;
constexpr auto kPoll = std::chrono::milliseconds(50);

double SecondsSince(SteadyClock::time_point start) {
  return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

std::string PoolLabel(const std::string& fqdn) { return fqdn.substr(0, fqdn.find('.')); }

// ---- `tandem` child processes ----

struct ChildRun {
  int exit_code = -1;
  std::string out;
  std::string err;
  double seconds = 0;
  int64_t started_ms = 0;
};

std::string SelfPath() {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string("tandem") : self.string();
}

// Runs this very `tandem` binary with `args` and collects what it prints: the
// operator's commands are run as an operator runs them.
Result<ChildRun> RunTandem(const std::vector<std::string>& args) {
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return MakeError(ErrorCode::kIoError, "pipe failed");
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    return MakeError(ErrorCode::kIoError, "pipe failed");
  }
  std::string self = SelfPath();
  ChildRun run;
  run.started_ms = NowUnixMillis();
  auto started = SteadyClock::now();
  pid_t pid = ::fork();
  if (pid < 0) return MakeError(ErrorCode::kIoError, fmt::format("fork failed: {}", std::strerror(errno)));
  if (pid == 0) {
    ::dup2(out_pipe[1], 1);
    ::dup2(err_pipe[1], 2);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    std::vector<std::string> argv_strings = {self};
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& arg : argv_strings) argv.push_back(arg.data());
    argv.push_back(nullptr);
    ::execv(self.c_str(), argv.data());
    ::_exit(127);
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&run.out, &run.err};
  int open_fds = 2;
  char buffer[8192];
  while (open_fds > 0) {
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      ssize_t n = ::read(fds[i].fd, buffer, sizeof(buffer));
      if (n > 0) {
        sinks[i]->append(buffer, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  run.seconds = SecondsSince(started);
  return run;
}

std::string Indent(const std::string& text) {
  std::string out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    out += "      | " + text.substr(start, end - start) + "\n";
    start = end + 1;
  }
  return out;
}

// ---- preflight ----

bool CanBind(const std::string& address, uint16_t port, int type) {
  sockaddr_storage storage{};
  socklen_t length = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&storage);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&storage);
  std::string host = address;
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  if (::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    length = sizeof(*v4);
  } else if (::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    length = sizeof(*v6);
  } else {
    return true;  // a host name: the server will say whether it can bind
  }
  int fd = ::socket(storage.ss_family, type | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  int on = 1;
  // As the servers bind: a port in TIME_WAIT is free.
  if (type == SOCK_STREAM) ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  bool free = ::bind(fd, reinterpret_cast<sockaddr*>(&storage), length) == 0;
  ::close(fd);
  return free;
}

std::vector<std::string> BusyPorts(const Topology& topology) {
  std::vector<std::string> busy;
  for (const PoolSpec& pool : topology.pools) {
    for (const ServerSpec& server : pool.servers) {
      if (!CanBind(server.address, server.admin_port, SOCK_STREAM)) {
        busy.push_back(fmt::format("{}:{} (admin port of {})", server.address, server.admin_port, server.id));
      }
      if (!CanBind(server.address, server.sip_port, SOCK_DGRAM) ||
          !CanBind(server.address, server.sip_port, SOCK_STREAM)) {
        busy.push_back(fmt::format("{}:{} (SIP port of {})", server.address, server.sip_port, server.id));
      }
    }
  }
  return busy;
}

// ---- continuous contact-list writes ----

// Adds contacts to users' lists through the admin API of the given servers in turn,
// as fast as they are acknowledged, and remembers every acknowledged (2xx) write.
class ContactWriter {
 public:
  ContactWriter(std::vector<std::string> admin_urls, std::string token, std::vector<std::string> user_uris,
                std::string domain)
      : admin_urls_(std::move(admin_urls)),
        token_(std::move(token)),
        user_uris_(std::move(user_uris)),
        domain_(std::move(domain)) {}
  ~ContactWriter() { Stop(); }

  void Start() {
    thread_ = std::thread([this] { Loop(); });
  }
  void Stop() {
    stopping_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::vector<AcknowledgedWrite> Acknowledged() const {
    std::lock_guard lock(mu_);
    return acknowledged_;
  }
  size_t attempts() const { return attempts_; }

 private:
  void Loop() {
    for (uint64_t n = 0; !stopping_; ++n) {
      size_t user = n % user_uris_.size();
      std::string contact = fmt::format("sip:drill-w{}@{}", n, domain_);
      std::string url = fmt::format("{}/users/contacts?user={}", admin_urls_[n % admin_urls_.size()],
                                    UrlEncode(user_uris_[user]));
      int64_t sent_at_ms = NowUnixMillis();
      auto response = HttpCall("POST", url, json{{"contact", contact}}.dump(),
                               {.token = token_, .timeout = std::chrono::milliseconds(2000)});
      ++attempts_;
      if (response && response->status / 100 == 2) {
        std::lock_guard lock(mu_);
        acknowledged_.push_back({user, contact, sent_at_ms, NowUnixMillis()});
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));  // a server down is not a busy loop
      }
    }
  }

  const std::vector<std::string> admin_urls_;
  const std::string token_;
  const std::vector<std::string> user_uris_;
  const std::string domain_;
  std::atomic<bool> stopping_{false};
  std::atomic<size_t> attempts_{0};
  mutable std::mutex mu_;
  std::vector<AcknowledgedWrite> acknowledged_;  // guarded by mu_
  std::thread thread_;
};

// ---- the drill ----

class Drill {
 public:
  Drill(DrillOptions options, Topology topology, const PoolSpec& lost, const PoolSpec& kept, std::string data_dir,
        bool temporary_dir)
      : options_(std::move(options)),
        topology_(std::move(topology)),
        lost_(*topology_.FindPool(lost.fqdn)),
        kept_(*topology_.FindPool(kept.fqdn)),
        data_dir_(std::move(data_dir)),
        temporary_dir_(temporary_dir),
        users_(static_cast<size_t>(options_.users)) {}

  json Run() {
    report_ = {{"topology", options_.topology_path},
               {"data_dir", data_dir_},
               {"users_per_pool", users_},
               {"lost_pool", lost_.fqdn},
               {"backup_pool", kept_.fqdn},
               {"client_retry_seconds", options_.client_retry.count() / 1000.0}};
    Say(fmt::format("DR drill: {} users per pool; {} will be lost (servers and store), {} takes over; data dir {}",
                    users_, lost_.fqdn, kept_.fqdn, data_dir_));
    std::string failure;
    for (auto& [name, step] : Steps()) {
      auto step_started = SteadyClock::now();
      Status done;
      try {
        done = step();
      } catch (const std::exception& e) {  // nlohmann::json on an answer of an unexpected shape
        done = MakeError(ErrorCode::kInternal, fmt::format("unexpected answer: {}", e.what()));
      }
      steps_.push_back({{"step", name}, {"seconds", SecondsSince(step_started)}, {"ok", done.has_value()}});
      if (!done) {
        failure = fmt::format("{}: {}", name, done.error().message);
        Say("FAILED: " + failure);
        break;
      }
    }
    Cleanup();
    report_["steps"] = steps_;
    report_["findings"] = findings_;
    report_["seconds"] = SecondsSince(started_);
    bool passed = failure.empty() && checks_failed_.empty();
    if (!failure.empty()) report_["failure"] = failure;
    report_["failed_checks"] = checks_failed_;
    report_["passed"] = passed;
    if (passed && temporary_dir_) {
      std::error_code ec;
      std::filesystem::remove_all(data_dir_, ec);
      report_["data_dir_removed"] = true;
    }
    return report_;
  }

 private:
  using StepFn = std::function<Status()>;

  std::vector<std::pair<std::string, StepFn>> Steps() {
    return {{"start", [this] { return StartDeployment(); }},
            {"provision", [this] { return Provision(); }},
            {"register", [this] { return RegisterPhones(); }},
            {"messages", [this] { return CheckMessages(); }},
            {"writes", [this] { return StartWrites(); }},
            {"lose", [this] { return LosePool(); }},
            {"cms failover", [this] { return FailCmsOver(); }},
            {"pool failover", [this] { return FailPoolOver(); }},
            {"rpo", [this] { return CheckRecoveryPoint(); }},
            {"return", [this] { return BringBack(); }},
            {"failback", [this] { return FailBack(); }},
            {"verify", [this] { return Verify(); }}};
  }

  void Say(const std::string& line) {
    if (options_.out == nullptr) return;
    std::fprintf(options_.out, "[%7.2f s] %s\n", SecondsSince(started_), line.c_str());
    std::fflush(options_.out);
  }

  void ShowChild(const ChildRun& run) {
    if (options_.out == nullptr) return;
    std::fputs(Indent(run.out + run.err).c_str(), options_.out);
    std::fflush(options_.out);
  }

  void CheckFailed(const std::string& what) {
    checks_failed_.push_back(what);
    Say("CHECK FAILED: " + what);
  }

  // Runs an operator command; a non-zero exit is an Error carrying its message.
  Result<ChildRun> Command(const std::vector<std::string>& args, bool show = true) {
    std::vector<std::string> full = {"--data-dir", data_dir_};
    full.insert(full.end(), args.begin(), args.end());
    auto run = RunTandem(full);
    if (!run) return run;
    std::string shown = "tandem";
    for (const std::string& arg : args) shown += " " + arg;
    Say(fmt::format("$ {}  ({:.2f} s, exit {})", shown, run->seconds, run->exit_code));
    if (show) ShowChild(*run);
    if (run->exit_code != 0) {
      std::string message = run->err;
      while (!message.empty() && message.back() == '\n') message.pop_back();
      return MakeError(ErrorCode::kFailedPrecondition, fmt::format("`{}` failed: {}", shown, message));
    }
    return run;
  }

  AdminTarget TargetOf(const PoolSpec& pool) const {
    AdminTarget target{{}, token_};
    for (const ServerSpec& server : pool.servers) target.base_urls.push_back(HttpBaseUrl(server.address, server.admin_port));
    return target;
  }

  Result<json> Admin(const PoolSpec& pool, std::string_view method, std::string_view path, std::string_view body = "") {
    auto response = CallAdmin(TargetOf(pool), method, path, body);
    if (!response) return std::unexpected(response.error());
    if (response->status / 100 != 2) return MakeError(ErrorCode::kUnavailable, AdminErrorMessage(*response));
    auto parsed = json::parse(response->body, nullptr, false);
    if (parsed.is_discarded()) return MakeError(ErrorCode::kCorruption, "a server answered with something not JSON");
    return parsed;
  }

  // Polls `done` until it holds or the step timeout passes.
  Status WaitFor(const std::string& what, const std::function<bool()>& done) {
    auto deadline = SteadyClock::now() + options_.step_timeout;
    while (!done()) {
      if (SteadyClock::now() > deadline) {
        return MakeError(ErrorCode::kTimeout, fmt::format("{} did not happen within {} s (logs: {}/servers/*/tandemd.log)",
                                                          what, options_.step_timeout.count(), data_dir_));
      }
      std::this_thread::sleep_for(kPoll);
    }
    return OkStatus();
  }

  std::string UserName(const PoolSpec& pool, size_t i) const { return fmt::format("{}-u{}", PoolLabel(pool.fqdn), i); }
  std::string UserUri(const PoolSpec& pool, size_t i) const {
    return fmt::format("sip:{}@{}", UserName(pool, i), topology_.sip_domain);
  }
  // Phones 0..N-1 are the lost pool's users, N..2N-1 the kept pool's.
  size_t LostPhone(size_t i) const { return i; }
  size_t KeptPhone(size_t i) const { return users_ + i; }

  // ---- steps ----

  Status StartDeployment() {
    UpOptions up{.topology_path = options_.topology_path,
                 .data_dir = data_dir_,
                 .detach = true,
                 .start_timeout = std::chrono::seconds(60),
                 .stop_with_caller = true,
                 .out = nullptr};
    auto started = SteadyClock::now();
    if (auto upped = Up(up); !upped) return upped;
    launched_ = true;
    auto target = ResolveAdminTarget(ConnectionOptions{data_dir_, "", ""});
    if (!target) return std::unexpected(target.error());
    token_ = target->token;
    for (const PoolSpec* pool : {&lost_, &kept_}) {
      for (const ServerSpec& server : pool->servers) {
        if (pool == &lost_) lost_servers_.insert(servers_.size());
        else kept_servers_.push_back(servers_.size());
        servers_.push_back({server.id, pool->fqdn, server.address, server.sip_port});
      }
    }
    // Ready when every pool's servers see each other live.
    auto all_live = [&] {
      for (const PoolSpec* pool : {&lost_, &kept_}) {
        auto status = Admin(*pool, "GET", "/pool/status?local=1");
        if (!status || status->value("live_servers", size_t{0}) != pool->servers.size()) return false;
      }
      return true;
    };
    if (auto live = WaitFor("every server joining its pool", all_live); !live) return live;
    Say(fmt::format("started {} servers ({}: {}, {}: {}) in {:.2f} s", servers_.size(), lost_.fqdn,
                    lost_.servers.size(), kept_.fqdn, kept_.servers.size(), SecondsSince(started)));
    return OkStatus();
  }

  Status Provision() {
    std::string csv = "uri,pool,password\n";
    for (const PoolSpec* pool : {&lost_, &kept_}) {
      for (size_t i = 0; i < users_; ++i) csv += fmt::format("{},{},{}\n", UserUri(*pool, i), pool->fqdn, Password(i));
    }
    std::string path = data_dir_ + "/drill-users.csv";
    if (auto written = WriteFileAtomically(path, csv, 0600); !written) return written;
    if (auto imported = Command({"user", "import", path}); !imported) return std::unexpected(imported.error());
    // Users provisioned long before a disaster are copied (and so is the CMS, which a
    // forced CMS failover needs); the drill's loss window is for the writes that follow.
    if (auto synced = Command({"backup", "sync", "--pool", lost_.fqdn}); !synced) {
      return std::unexpected(synced.error());
    }
    return OkStatus();
  }

  static std::string Password(size_t i) { return fmt::format("drill-pw-{}", i); }

  Status RegisterPhones() {
    std::vector<PhoneSpec> phones;
    for (const PoolSpec* pool : {&lost_, &kept_}) {
      std::vector<size_t> home, other;
      for (size_t s = 0; s < servers_.size(); ++s) (servers_[s].pool == pool->fqdn ? home : other).push_back(s);
      for (size_t i = 0; i < users_; ++i) {
        // Every server of both pools, home pool first, spread over the servers.
        std::vector<size_t> order;
        for (size_t k = 0; k < home.size(); ++k) order.push_back(home[(i + k) % home.size()]);
        for (size_t k = 0; k < other.size(); ++k) order.push_back(other[(i + k) % other.size()]);
        phones.push_back({UserName(*pool, i), Password(i), order});
      }
    }
    FleetOptions fleet_options{.domain = topology_.sip_domain, .servers = servers_, .retry_interval = options_.client_retry};
    auto fleet = PhoneFleet::Create(std::move(fleet_options), std::move(phones));
    if (!fleet) return std::unexpected(fleet.error());
    fleet_ = std::move(*fleet);
    auto started = SteadyClock::now();
    fleet_->Start();
    size_t registered = 0;
    auto all_registered = [&] {
      auto views = fleet_->Snapshot();
      registered = std::count_if(views.begin(), views.end(), [](const PhoneView& v) { return v.registered; });
      return registered == views.size();
    };
    if (auto done = WaitFor("every phone registering", all_registered); !done) {
      return MakeError(ErrorCode::kTimeout, fmt::format("{} of {} phones registered: {}", registered, fleet_->size(),
                                                        done.error().message));
    }
    Say(fmt::format("{} phones registered with their home pools in {:.2f} s", fleet_->size(), SecondsSince(started)));
    return OkStatus();
  }

  // Probes each of `targets` (phone indexes) that is `ready`, from `sender(i)`
  // through `server(i)`, until each answered 200 and was delivered, `deadline`
  // passes or `keep_waiting` (asked every round) says no; when each was reached.
  std::vector<int64_t> Reach(const std::vector<size_t>& targets, const std::function<size_t(size_t)>& sender,
                             const std::function<size_t(size_t)>& server,
                             const std::function<bool(const PhoneView&)>& ready, SteadyClock::time_point deadline,
                             const std::function<bool()>& keep_waiting = {}) {
    std::vector<int64_t> reached(targets.size(), 0);
    size_t missing = targets.size();
    while (missing > 0 && SteadyClock::now() < deadline) {
      if (keep_waiting && !keep_waiting()) break;
      auto views = fleet_->Snapshot();
      std::vector<MessageProbe> probes;
      std::vector<size_t> probed;
      for (size_t k = 0; k < targets.size(); ++k) {
        if (reached[k] != 0 || !ready(views[targets[k]])) continue;
        probes.push_back({sender(targets[k]), targets[k], server(targets[k])});
        probed.push_back(k);
      }
      if (probes.empty()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        continue;
      }
      auto results = fleet_->SendMessages(probes);
      for (size_t p = 0; p < results.size(); ++p) {
        if (results[p].status == 200 && results[p].delivered) {
          reached[probed[p]] = results[p].answered_at_ms;
          --missing;
        }
      }
    }
    return reached;
  }

  Status CheckMessages() {
    auto started = SteadyClock::now();
    std::vector<size_t> lost_phones, kept_phones;
    for (size_t i = 0; i < users_; ++i) {
      lost_phones.push_back(LostPhone(i));
      kept_phones.push_back(KeptPhone(i));
    }
    auto deadline = SteadyClock::now() + std::min<SteadyClock::duration>(options_.step_timeout, std::chrono::seconds(60));
    auto always = [](const PhoneView&) { return true; };
    // Each way across: a kept-pool user through a kept-pool server to a lost-pool user, and back.
    auto to_lost = Reach(lost_phones, [&](size_t p) { return KeptPhone(p % users_); },
                         [&](size_t p) { return kept_servers_[p % kept_servers_.size()]; }, always, deadline);
    std::vector<size_t> lost_list(lost_servers_.begin(), lost_servers_.end());
    auto to_kept = Reach(kept_phones, [&](size_t p) { return LostPhone(p % users_); },
                         [&](size_t p) { return lost_list[p % lost_list.size()]; }, always, deadline);
    size_t failed = std::count(to_lost.begin(), to_lost.end(), 0) + std::count(to_kept.begin(), to_kept.end(), 0);
    if (failed > 0) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       fmt::format("{} of {} MESSAGEs between the pools were not delivered before anything was lost",
                                   failed, 2 * users_));
    }
    Say(fmt::format("{} MESSAGEs between the pools delivered and answered 200 in {:.2f} s", 2 * users_,
                    SecondsSince(started)));
    return OkStatus();
  }

  Status StartWrites() {
    std::vector<std::string> urls, uris;
    for (const PoolSpec* pool : {&lost_, &kept_}) {
      for (const ServerSpec& server : pool->servers) urls.push_back(HttpBaseUrl(server.address, server.admin_port));
    }
    written_users_ = std::min(users_, kMaxWrittenUsers);
    for (size_t i = 0; i < written_users_; ++i) uris.push_back(UserUri(lost_, i));
    writer_ = std::make_unique<ContactWriter>(urls, token_, uris, topology_.sip_domain);
    writer_->Start();
    // Long enough that some writes were shipped and some wait for the next sync.
    auto started = SteadyClock::now();
    auto interval = std::chrono::duration_cast<std::chrono::milliseconds>(topology_.backup_sync_interval);
    auto enough = [&] {
      return writer_->Acknowledged().size() >= 20 && SteadyClock::now() - started >= interval * 3 / 2;
    };
    if (auto done = WaitFor("contact-list writes being acknowledged", enough); !done) return done;
    Say(fmt::format("contact-list writes for {} users of {} through every server: {} acknowledged so far",
                    written_users_, lost_.fqdn, writer_->Acknowledged().size()));
    return OkStatus();
  }

  Status LosePool() {
    auto state = ReadLaunchState(data_dir_);
    if (!state) return std::unexpected(state.error());
    std::vector<std::string> killed;
    for (const LaunchedServer& server : state->servers) {
      if (server.pool != lost_.fqdn) continue;
      ::kill(server.pid, SIGKILL);
      ::waitpid(server.pid, nullptr, 0);  // ours: `tandem drill` started it
      killed.push_back(fmt::format("{} (pid {})", server.id, server.pid));
    }
    // Every server of the pool is dead from here on: no write sent later was acknowledged by it.
    lost_at_ms_ = NowUnixMillis();
    fleet_->ServersLost(lost_servers_);
    // The site is gone: its store and every server's directory (replica, secrets
    // memory) with it. The logs are kept aside for whoever reads the drill.
    std::string store = lost_.backend.sqlite_path;
    if (!std::filesystem::path(store).is_absolute()) store = data_dir_ + "/" + store;
    std::error_code ec;
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) std::filesystem::remove(store + suffix, ec);
    std::filesystem::create_directories(data_dir_ + "/drill-lost-logs", ec);
    for (const ServerSpec& server : lost_.servers) {
      std::string dir = ServerDirectory(data_dir_, server.id);
      std::filesystem::rename(dir + "/tandemd.log", fmt::format("{}/drill-lost-logs/{}.log", data_dir_, server.id), ec);
      std::filesystem::remove_all(dir, ec);
    }
    size_t acknowledged = writer_->Acknowledged().size();
    Say(fmt::format("LOST {}: kill -9 of {}; deleted its store {} and its servers' directories ({} writes "
                    "acknowledged so far)",
                    lost_.fqdn, fmt::join(killed, ", "), store, acknowledged));
    return OkStatus();
  }

  Status FailCmsOver() {
    auto status = Admin(kept_, "GET", "/cms/status");
    if (!status) return std::unexpected(status.error());
    std::string master = (*status)["master_pool"].get<std::string>();
    report_["cms_failover"] = {{"needed", master == lost_.fqdn}};
    if (master != lost_.fqdn) {
      Say(fmt::format("the CMS master is {}: no CMS failover needed", master));
      return OkStatus();
    }
    auto run = Command({"cms", "failover", "--force"});
    if (!run) return std::unexpected(run.error());
    report_["cms_failover"]["seconds"] = run->seconds;
    return OkStatus();
  }

  // Runs `args` in the background and, meanwhile, measures how long until every
  // lost-pool user is registered with a server of `serving` (after the command
  // started) and answers a MESSAGE. `after_command` runs once the command ended.
  Result<json> MeasureUsersServed(const std::vector<std::string>& args, const PoolSpec& serving,
                                  const std::function<void()>& after_command, json* command_report) {
    std::set<size_t> serving_servers;
    for (size_t s = 0; s < servers_.size(); ++s) {
      if (servers_[s].pool == serving.fqdn) serving_servers.insert(s);
    }
    std::atomic<bool> command_done{false};
    Result<ChildRun> run = MakeError(ErrorCode::kInternal, "not run");
    int64_t t0_ms = NowUnixMillis();
    auto t0 = SteadyClock::now();
    std::thread command([&] {
      std::vector<std::string> full = {"--data-dir", data_dir_, "--json"};
      full.insert(full.end(), args.begin(), args.end());
      run = RunTandem(full);
      command_done = true;
    });
    std::vector<size_t> targets;
    for (size_t i = 0; i < users_; ++i) targets.push_back(LostPhone(i));
    bool nudged = false;
    auto ready = [&](const PhoneView& view) {
      return view.registered && view.registered_at_ms >= t0_ms &&
             serving_servers.contains(static_cast<size_t>(view.registrar));
    };
    auto keep_waiting = [&] {
      if (command_done && !nudged) {
        nudged = true;
        if (run && run->exit_code == 0 && after_command) after_command();
      }
      return !(command_done && (!run || run->exit_code != 0));
    };
    auto reached = Reach(targets, [&](size_t p) { return KeptPhone(p % users_); },
                         [&](size_t p) { return kept_servers_[p % kept_servers_.size()]; },
                         ready, t0 + options_.step_timeout, keep_waiting);
    command.join();
    if (!run) return std::unexpected(run.error());
    std::string shown = "tandem --json";
    for (const std::string& arg : args) shown += " " + arg;
    Say(fmt::format("$ {}  ({:.2f} s, exit {})", shown, run->seconds, run->exit_code));
    auto parsed = json::parse(run->out, nullptr, false);
    if (run->exit_code != 0 || parsed.is_discarded()) {
      ShowChild(*run);
      return MakeError(ErrorCode::kFailedPrecondition, fmt::format("`{}` failed: {}", shown, run->err));
    }
    for (const json& step : parsed.value("steps", json::array())) {
      Say(fmt::format("    [{:6.2f} s] {}", step["at_seconds"].get<double>(), step["step"].get<std::string>()));
    }
    *command_report = parsed;
    auto views = fleet_->Snapshot();
    size_t served = 0, registered = 0;
    int64_t last_reached = 0, last_registered = 0;
    for (size_t k = 0; k < targets.size(); ++k) {
      const PhoneView& view = views[targets[k]];
      if (ready(view)) {
        ++registered;
        last_registered = std::max(last_registered, view.registered_at_ms);
      }
      if (reached[k] != 0) {
        ++served;
        last_reached = std::max(last_reached, reached[k]);
      }
    }
    json measured{{"users", users_},
                  {"served", served},
                  {"command_seconds", run->seconds},
                  {"all_registered_seconds", registered == users_ ? json((last_registered - t0_ms) / 1000.0) : json()},
                  {"seconds", served == users_ ? json((last_reached - t0_ms) / 1000.0) : json()},
                  {"command_started_ms", t0_ms}};
    return measured;
  }

  Status FailPoolOver() {
    json command;
    auto measured = MeasureUsersServed({"pool", "failover", "--pool", lost_.fqdn, "--disaster"}, kept_, {}, &command);
    if (!measured) return std::unexpected(measured.error());
    report_["rto"] = *measured;
    // The bound the command reported: the user module's copy holds everything the
    // lost pool committed up to (when the command read it) - (lag).
    const json& lag = command["lost_after_seconds"].value("user", json());
    const json& steps = command["steps"];
    double read_at_seconds = steps.size() > 1 ? steps[1]["at_seconds"].get<double>() : 0.0;
    int64_t read_ms = (*measured)["command_started_ms"].get<int64_t>() + static_cast<int64_t>(read_at_seconds * 1000);
    held_through_ms_ = lag.is_number() ? read_ms - static_cast<int64_t>(lag.get<double>() * 1000) : 0;
    report_["rpo"] = {{"reported_lost_after_seconds", command["lost_after_seconds"]},
                      {"reported_applied_seq", command["applied_seq"]},
                      {"bound_seconds", (lost_at_ms_ - held_through_ms_) / 1000.0}};
    if ((*measured)["seconds"].is_null()) {
      CheckFailed(fmt::format("after the failover, {} of {} users of {} were served by {}",
                              (*measured)["served"].get<size_t>(), users_, lost_.fqdn, kept_.fqdn));
      return OkStatus();
    }
    Say(fmt::format("RTO {:.2f} s: every one of {} users of {} registered with {} and answered a MESSAGE "
                    "(command {:.2f} s, all registered at {:.2f} s)",
                    (*measured)["seconds"].get<double>(), users_, lost_.fqdn, kept_.fqdn,
                    (*measured)["command_seconds"].get<double>(), (*measured)["all_registered_seconds"].get<double>()));
    return OkStatus();
  }

  // The contact lists of the written users as `pool` serves them.
  Result<std::vector<std::set<std::string>>> ReadContacts(const PoolSpec& pool) {
    std::vector<std::set<std::string>> lists(written_users_);
    for (size_t i = 0; i < written_users_; ++i) {
      auto answer = Admin(pool, "GET", "/users/contacts?user=" + UrlEncode(UserUri(lost_, i)));
      if (!answer) {
        return MakeError(answer.error().code, fmt::format("reading the contacts of {} from {}: {}", UserUri(lost_, i),
                                                          pool.fqdn, answer.error().message));
      }
      for (const json& contact : (*answer)["contacts"]) lists[i].insert(contact["contact"].get<std::string>());
    }
    return lists;
  }

  Status CheckRecoveryPoint() {
    auto lists = ReadContacts(kept_);
    if (!lists) return std::unexpected(lists.error());
    auto writes = writer_->Acknowledged();
    LossAssessment loss = AssessLoss(
        writes, lost_at_ms_, [&](size_t user) -> const std::set<std::string>& { return (*lists)[user]; },
        held_through_ms_, kBoundToleranceMs);
    for (const AcknowledgedWrite& write : loss.lost_writes) lost_contacts_.insert(write.contact);
    json& rpo = report_["rpo"];
    rpo["writes_acknowledged_before_loss"] = loss.acknowledged;
    rpo["writes_lost"] = loss.lost;
    rpo["lost_within_bound"] = loss.lost_within_bound;
    rpo["lost_beyond_bound"] = loss.lost_beyond_bound;
    rpo["measured_seconds"] = loss.lost == 0 ? 0.0 : std::max<int64_t>(0, lost_at_ms_ - loss.earliest_lost_ms) / 1000.0;
    rpo["within_bound"] = loss.lost_beyond_bound == 0;
    Say(fmt::format("RPO: {} of {} acknowledged writes lost ({:.2f} s of writes before the loss); the failover "
                    "reported at most {:.2f} s",
                    loss.lost, loss.acknowledged, rpo["measured_seconds"].get<double>(),
                    rpo["bound_seconds"].get<double>()));
    if (loss.lost_beyond_bound > 0) {
      const AcknowledgedWrite& oldest = *std::min_element(
          loss.lost_writes.begin(), loss.lost_writes.end(),
          [](const AcknowledgedWrite& a, const AcknowledgedWrite& b) { return a.acked_at_ms < b.acked_at_ms; });
      CheckFailed(fmt::format("{} acknowledged writes older than the reported bound were lost (e.g. {} of user #{}, "
                              "acknowledged {} ms before the loss)",
                              loss.lost_beyond_bound, oldest.contact, oldest.user, lost_at_ms_ - oldest.acked_at_ms));
    }
    return OkStatus();
  }

  Status BringBack() {
    auto started = SteadyClock::now();
    std::vector<std::string> ids;
    for (const ServerSpec& server : lost_.servers) ids.push_back(server.id);
    if (auto again = StartAgain(data_dir_, ids, std::chrono::seconds(60), /*stop_with_caller=*/true, nullptr);
        !again) {
      return again;
    }
    Say(fmt::format("{} is back with empty stores ({} servers healthy in {:.2f} s)", lost_.fqdn, ids.size(),
                    SecondsSince(started)));
    // Fenced: the returning servers must take the CMS and routing the kept pool serves.
    auto kept_status = Admin(kept_, "GET", "/status");
    if (!kept_status) return std::unexpected(kept_status.error());
    const json& kept_cms = (*kept_status)["cms"];
    auto fenced = [&] {
      for (const ServerSpec& server : lost_.servers) {
        auto status = HttpCall("GET", HttpBaseUrl(server.address, server.admin_port) + "/status", "",
                               {.token = token_, .timeout = std::chrono::milliseconds(1000)});
        if (!status || status->status != 200) return false;
        auto cms = json::parse(status->body, nullptr, false);
        if (cms.is_discarded() || cms["cms"]["master_pool"] != kept_cms["master_pool"] ||
            cms["cms"]["routing_epoch"] != kept_cms["routing_epoch"]) {
          return false;
        }
      }
      return true;
    };
    if (auto done = WaitFor(fmt::format("the servers of {} taking the CMS master and routing of {}", lost_.fqdn,
                                        kept_.fqdn),
                            fenced);
        !done) {
      return done;
    }
    // A pool that comes back empty must follow the CMS master it finds, not start a
    // CMS of its own: its servers say in their logs when they publish a bootstrap.
    for (const ServerSpec& server : lost_.servers) {
      auto log = ReadFile(ServerDirectory(data_dir_, server.id) + "/tandemd.log");
      if (log && log->find("published the bootstrap topology") != std::string::npos) {
        CheckFailed(fmt::format("{} came back with an empty store and published a bootstrap CMS of its own as "
                                "master (server {}) instead of following {}, the master since the CMS failover",
                                lost_.fqdn, server.id, kept_.fqdn));
        break;
      }
    }
    if (auto cms = Admin(kept_, "GET", "/cms/status"); cms && !(*cms)["divergent"].empty()) {
      findings_.push_back(fmt::format(
          "{} came back with an empty store and published its bootstrap topology as CMS master before stepping "
          "down; its versions are kept apart as divergent: {}",
          lost_.fqdn, (*cms)["divergent"].dump()));
      Say("FINDING: " + findings_.back().get<std::string>());
    }
    Say(fmt::format("{} follows CMS master {} (epoch {}) and routing epoch {}", lost_.fqdn,
                    kept_cms["master_pool"].get<std::string>(), kept_cms["master_epoch"].dump(),
                    kept_cms["routing_epoch"].dump()));
    // The Backup Service gives the returning pool its copy back before the failback.
    auto caught_up_at = SteadyClock::now();
    json last;
    auto caught_up = [&] {
      auto status = Admin(kept_, "GET", "/backup/status?pool=" + UrlEncode(kept_.fqdn));
      if (!status) return false;
      last = *status;
      for (const json& direction : (*status)["directions"]) {
        if (direction["from"] != kept_.fqdn) continue;
        for (const json& module : direction["modules"]) {
          if (!module["applied_seq"].is_number() || !module["source_seq"].is_number() ||
              module["applied_seq"].get<int64_t>() < module["source_seq"].get<int64_t>() ||
              module["import_state"] != "NormalState" || module.contains("initial_sync_rows_sent")) {
            return false;
          }
        }
        return true;
      }
      return false;
    };
    if (auto done = WaitFor(fmt::format("the Backup Service catching {} up with {}", lost_.fqdn, kept_.fqdn),
                            caught_up);
        !done) {
      return MakeError(done.error().code, done.error().message + "; last status: " + last.dump());
    }
    Say(fmt::format("backup {} -> {} caught up in {:.2f} s", kept_.fqdn, lost_.fqdn, SecondsSince(caught_up_at)));
    return OkStatus();
  }

  Status FailBack() {
    json command;
    // Phones learn of the failback when the command ends (a server-driven sign-out in
    // a real deployment): they refresh with the server they use and follow its 301.
    std::vector<size_t> lost_phones;
    for (size_t i = 0; i < users_; ++i) lost_phones.push_back(LostPhone(i));
    auto measured = MeasureUsersServed({"pool", "failback", "--pool", lost_.fqdn}, lost_,
                                       [&] { fleet_->Reregister(lost_phones); }, &command);
    if (!measured) return std::unexpected(measured.error());
    report_["failback"] = *measured;
    if ((*measured)["seconds"].is_null()) {
      CheckFailed(fmt::format("after the failback, {} of {} users of {} were served by it again",
                              (*measured)["served"].get<size_t>(), users_, lost_.fqdn));
      return OkStatus();
    }
    Say(fmt::format("failback {:.2f} s: every one of {} users of {} registered at home again and answered a MESSAGE "
                    "(command {:.2f} s)",
                    (*measured)["seconds"].get<double>(), users_, lost_.fqdn,
                    (*measured)["command_seconds"].get<double>()));
    return OkStatus();
  }

  Status Verify() {
    writer_->Stop();
    auto writes = writer_->Acknowledged();
    auto lists = ReadContacts(lost_);
    if (!lists) return std::unexpected(lists.error());
    size_t missing = 0;
    std::string example;
    for (const AcknowledgedWrite& write : writes) {
      if ((*lists)[write.user].contains(write.contact) || lost_contacts_.contains(write.contact)) continue;
      if (missing++ == 0) example = fmt::format("{} of user #{}", write.contact, write.user);
    }
    report_["writes"] = {{"attempted", writer_->attempts()},
                         {"acknowledged", writes.size()},
                         {"missing_at_home_after_failback", missing}};
    Say(fmt::format("{} contact-list writes acknowledged in all; at home after the failback: every one but the {} "
                    "lost in the disaster{}",
                    writes.size(), lost_contacts_.size(),
                    missing ? fmt::format(", and {} more MISSING", missing) : std::string()));
    if (missing > 0) {
      CheckFailed(fmt::format("{} acknowledged writes (not lost in the disaster) are missing at home after the "
                              "failback, e.g. {}",
                              missing, example));
    }
    // The copy cannot be ahead of its source: if it says so, the returning pool's
    // change log started again below what its partner had applied.
    if (auto status = Admin(lost_, "GET", "/backup/status?pool=" + UrlEncode(lost_.fqdn)); status) {
      for (const json& direction : (*status)["directions"]) {
        if (direction["from"] != lost_.fqdn) continue;
        for (const json& module : direction["modules"]) {
          if (!module["applied_seq"].is_number() || !module["source_seq"].is_number() ||
              module["applied_seq"].get<int64_t>() <= module["source_seq"].get<int64_t>()) {
            continue;
          }
          CheckFailed(fmt::format(
              "{} reports {}'s {} changes applied up to sequence {}, beyond the {} {}'s change log reaches: the log "
              "started again when {} lost its store, and changes below {} are neither shipped nor kept (backup "
              "status shows {})",
              kept_.fqdn, lost_.fqdn, module["module"].get<std::string>(), module["applied_seq"].dump(),
              module["source_seq"].dump(), lost_.fqdn, lost_.fqdn, module["applied_seq"].dump(),
              module["export_state"].get<std::string>()));
        }
      }
    }
    if (auto synced = Command({"backup", "sync", "--pool", lost_.fqdn}); !synced) {
      return std::unexpected(synced.error());
    }
    auto verified = Command({"backup", "verify", "--pool", lost_.fqdn});
    report_["verify"] = {{"consistent", verified.has_value()}};
    if (!verified) CheckFailed(verified.error().message);
    return OkStatus();
  }

  void Cleanup() {
    if (writer_) writer_->Stop();
    fleet_.reset();
    if (launched_) {
      (void)Down(data_dir_, std::chrono::seconds(10), nullptr);
      while (::waitpid(-1, nullptr, WNOHANG) > 0) {
      }
    }
  }

  const DrillOptions options_;
  const Topology topology_;
  const PoolSpec& lost_;
  const PoolSpec& kept_;
  const std::string data_dir_;
  const bool temporary_dir_;
  const size_t users_;
  const SteadyClock::time_point started_ = SteadyClock::now();

  bool launched_ = false;
  std::string token_;
  std::vector<FleetServer> servers_;
  std::set<size_t> lost_servers_;
  std::vector<size_t> kept_servers_;
  std::unique_ptr<PhoneFleet> fleet_;
  size_t written_users_ = 0;
  std::unique_ptr<ContactWriter> writer_;
  int64_t lost_at_ms_ = 0;
  int64_t held_through_ms_ = 0;
  std::set<std::string> lost_contacts_;
  json report_;
  json steps_ = json::array();
  json findings_ = json::array();
  json checks_failed_ = json::array();
};

Result<std::string> PrepareDataDir(const std::string& requested, bool* temporary) {
  *temporary = requested.empty();
  if (requested.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = fmt::format("{}/tandem-drill-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (::mkdtemp(pattern.data()) == nullptr) {
      return MakeError(ErrorCode::kIoError, fmt::format("cannot create a data dir: {}", std::strerror(errno)));
    }
    return pattern;
  }
  std::string dir = std::filesystem::absolute(requested).lexically_normal().string();
  std::error_code ec;
  if (std::filesystem::exists(dir, ec) && !std::filesystem::is_empty(dir, ec)) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     fmt::format("{} is not empty; the drill deletes a pool's store, so it runs in a fresh data dir "
                                 "(name a new or empty one, or leave out --data-dir)",
                                 dir));
  }
  if (auto made = MakeDirectories(dir); !made) return std::unexpected(made.error());
  return dir;
}

}  // namespace

Result<json> RunDrill(const DrillOptions& options) {
  TopologyParseResult parsed = LoadTopologyFile(options.topology_path);
  if (parsed.HasErrors()) {
    std::string first;
    for (const Diagnostic& d : parsed.diagnostics) {
      if (d.severity == Severity::kError) {
        first = d.ToString();
        break;
      }
    }
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("{} is not a valid topology ({}); nothing was started", options.topology_path, first));
  }
  const Topology& topology = *parsed.topology;
  if (topology.pools.size() != 2 || !topology.pools[0].backup_pool ||
      *topology.pools[0].backup_pool != topology.pools[1].fqdn) {
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("{} is not two pools paired with each other; the drill fails one over to the other "
                                 "(see examples/two-sites.toml)",
                                 options.topology_path));
  }
  if (options.users < 1) return MakeError(ErrorCode::kInvalidArgument, "--users must be at least 1");
  // The pool lost is the CMS master's when it is one of the two: the harder case.
  const PoolSpec& lost = topology.pools[1].fqdn == topology.cms_master_pool ? topology.pools[1] : topology.pools[0];
  const PoolSpec& kept = &lost == &topology.pools[0] ? topology.pools[1] : topology.pools[0];
  if (lost.backend.type != BackendType::kSqlite) {
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("pool {} has a PostgreSQL back-end; the drill deletes the lost pool's store, which it "
                                 "does only for an embedded SQLite one",
                                 lost.fqdn));
  }
  if (auto busy = BusyPorts(topology); !busy.empty()) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     fmt::format("ports of {} are in use: {}; the drill starts its own servers, so stop whatever "
                                 "holds them (a `tandem up` of the same topology: `tandem down`) or use a topology "
                                 "with free ports",
                                 options.topology_path, fmt::join(busy, ", ")));
  }
  bool temporary = false;
  auto data_dir = PrepareDataDir(options.data_dir, &temporary);
  if (!data_dir) return std::unexpected(data_dir.error());
  DrillOptions resolved = options;
  resolved.topology_path = std::filesystem::absolute(options.topology_path).lexically_normal().string();
  Drill drill(resolved, topology, lost, kept, *data_dir, temporary);
  return drill.Run();
}

std::string FormatDrillReport(const json& report) {
  auto number = [](const json& value, const char* format = "{:.2f}") {
    return value.is_number() ? fmt::format(fmt::runtime(format), value.get<double>()) : std::string("-");
  };
  std::string out = fmt::format("\nDR drill report: {} lost, {} took over, {} users per pool\n",
                                report.value("lost_pool", ""), report.value("backup_pool", ""),
                                report.value("users_per_pool", 0));
  if (report.contains("rpo")) {
    const json& rpo = report["rpo"];
    out += fmt::format("  RPO       {} of {} acknowledged writes lost ({} s of writes); bound reported {} s: {}\n",
                       rpo.value("writes_lost", json()).dump(), rpo.value("writes_acknowledged_before_loss", json()).dump(),
                       number(rpo.value("measured_seconds", json())), number(rpo.value("bound_seconds", json())),
                       rpo.value("within_bound", false) ? "within the bound" : "NOT within the bound");
  }
  if (report.contains("cms_failover") && report["cms_failover"].value("needed", false)) {
    out += fmt::format("  CMS       failover --force took {} s\n", number(report["cms_failover"].value("seconds", json())));
  }
  for (const char* key : {"rto", "failback"}) {
    if (!report.contains(key)) continue;
    const json& m = report[key];
    out += fmt::format("  {:<9} {} s (command {} s; {} of {} users served)\n",
                       std::string(key) == "rto" ? "RTO" : "failback", number(m["seconds"]),
                       number(m["command_seconds"]), m["served"].dump(), m["users"].dump());
  }
  if (report.contains("verify")) {
    out += fmt::format("  verify    {}\n", report["verify"].value("consistent", false) ? "consistent" : "DIFFERS");
  }
  for (const json& finding : report.value("findings", json::array())) {
    out += "  finding   " + finding.get<std::string>() + "\n";
  }
  for (const json& failed : report.value("failed_checks", json::array())) {
    out += "  FAILED    " + failed.get<std::string>() + "\n";
  }
  if (report.contains("failure")) out += "  FAILED    " + report["failure"].get<std::string>() + "\n";
  out += fmt::format("  result    {} ({} s in all)\n", report.value("passed", false) ? "PASSED" : "FAILED",
                     number(report.value("seconds", json()), "{:.1f}"));
  if (!report.value("data_dir_removed", false)) out += fmt::format("  data dir  {}\n", report.value("data_dir", ""));
  return out;
}

}  // namespace tandem
