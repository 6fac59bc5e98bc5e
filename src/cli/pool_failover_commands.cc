#include "cli/pool_failover_commands.h"

#include <chrono>
#include <cstdio>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "admin/http_server.h"
#include "cli/backup_commands.h"
#include "cli/command_util.h"
#include "common/clock.h"

namespace tandem {
namespace {

using nlohmann::json;

// Prints steps as they happen ("[  0.12 s] what") and collects them for --json.
class StepLog {
 public:
  explicit StepLog(bool as_json) : as_json_(as_json) {}
  void Step(const std::string& what) {
    double at = Seconds();
    steps_.push_back({{"at_seconds", at}, {"step", what}});
    if (!as_json_) std::printf("[%6.2f s] %s\n", at, what.c_str());
    std::fflush(stdout);
  }
  double Seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  }
  json Steps() const { return steps_; }

 private:
  const bool as_json_;
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  json steps_ = json::array();
};

std::string Q(const std::string& value) { return UrlEncode(value); }

json Check(const ConnectionOptions& connection, const char* action, const std::string& pool, bool disaster) {
  return CallJson(connection, "GET",
                  fmt::format("/dr/check?action={}&pool={}&disaster={}", action, Q(pool), disaster ? 1 : 0));
}

void RefuseChanges(const ConnectionOptions& connection, const std::string& at_pool, const std::string& home,
                   bool on, const std::string& reason) {
  CallJson(connection, "POST",
           fmt::format("/dr/refuse-changes?pool={}&home={}&state={}&reason={}", Q(at_pool), Q(home), on ? "on" : "off",
                       Q(reason)));
}

// Syncs `pool` to its backup pool until its heads stop moving (writes that were in
// flight when changes began to be refused are drained too); the final heads.
json Drain(const ConnectionOptions& connection, const std::string& pool, int timeout_seconds) {
  json previous;
  for (int round = 0; round < 20; ++round) {
    json targets = CallJson(connection, "POST", fmt::format("/backup/sync?pool={}&module=all", Q(pool)))["targets"];
    if (targets == previous) return targets;
    WaitForSync(connection, pool, targets, timeout_seconds, /*as_json=*/true);
    previous = targets;
  }
  Fail(fmt::format("the change log of pool {} kept growing while changes were refused; nothing was switched", pool));
}

// Waits (bounded) until every server of the topology that answers runs a CMS
// version at least `version`; returns how many do and how many did not answer.
std::pair<int, int> WaitForVersion(const ConnectionOptions& connection, int64_t version) {
  int have = 0, unreachable = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (true) {
    json status = CallJson(connection, "GET", "/cms/status");
    have = unreachable = 0;
    int total = 0;
    for (const json& server : status.value("servers", json::array())) {
      ++total;
      if (!server.contains("replica_version") || !server["replica_version"].is_number()) {
        ++unreachable;
      } else if (server["replica_version"].get<int64_t>() >= version) {
        ++have;
      }
    }
    if (have + unreachable == total || std::chrono::steady_clock::now() > deadline) return {have, unreachable};
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

int64_t PublishRouting(const ConnectionOptions& connection, const char* action, const std::string& pool, bool disaster,
                       const json& applied_seq) {
  json update{{"action", action},
              {"pool", pool},
              {"disaster", disaster},
              {"applied_seq", applied_seq},
              {"now_ms", NowUnixMillis()}};
  return CallJson(connection, "POST", "/cms/routing", update.dump())["version"].get<int64_t>();
}

// The modules of the direction `from` -> `to` in `to`'s backup status (`to` answers
// for itself even when `from` is unreachable).
json InboundModules(const ConnectionOptions& connection, const std::string& from, const std::string& to) {
  json status = CallJson(connection, "GET", fmt::format("/backup/status?pool={}", Q(to)));
  for (const json& direction : status["directions"]) {
    if (direction["from"] == from) return direction["modules"];
  }
  return json::array();
}

void Finish(StepLog& log, bool as_json, json report) {
  report["seconds"] = log.Seconds();
  report["steps"] = log.Steps();
  if (as_json) std::printf("%s\n", report.dump(2).c_str());
}

void Announce(StepLog& log, const std::pair<int, int>& servers, int64_t version) {
  log.Step(fmt::format("{} servers run CMS version {}{}", servers.first, version,
                       servers.second > 0 ? fmt::format(" ({} did not answer; they learn it when back)", servers.second)
                                          : ""));
}

void Failover(const ConnectionOptions& connection, const std::string& pool, bool disaster, int timeout, bool as_json) {
  StepLog log(as_json);
  json plan = Check(connection, "failover", pool, disaster);
  std::string partner = plan["partner"];
  log.Step(fmt::format("checked: {}'s users move to its backup pool {} ({} mode)", pool, partner,
                       disaster ? "disaster" : "planned"));
  json applied = json::object();
  json report{{"pool", pool}, {"served_by", partner}, {"disaster", disaster}};
  if (!disaster) {
    RefuseChanges(connection, pool, pool, true, fmt::format("pool {} is being failed over to {}", pool, partner));
    log.Step(fmt::format("{} refuses persistent changes for its users", pool));
    try {
      applied = Drain(connection, pool, timeout);
    } catch (const CommandFailure& failure) {
      RefuseChanges(connection, pool, pool, false, "");
      Fail(failure.message + fmt::format("; pool {} accepts changes again and still serves its users", pool));
    }
    log.Step(fmt::format("Backup Service of {} drained to {} (FinalState): {}", pool, partner, applied.dump()));
  } else {
    json lost_bound = json::object();
    for (const json& module : InboundModules(connection, pool, partner)) {
      std::string name = module["module"];
      applied[name] = module.value("applied_seq", json(0));
      lost_bound[name] = module.value("lag_seconds", json());
    }
    report["lost_after_seconds"] = lost_bound;
    log.Step(fmt::format("{} holds {}'s changes up to sequences {}; anything {} committed after the newest of them "
                         "(seconds before now: {}) may be lost",
                         partner, pool, applied.dump(), pool, lost_bound.dump()));
  }
  report["applied_seq"] = applied;
  int64_t version = PublishRouting(connection, "failover", pool, disaster, applied);
  log.Step(fmt::format("routing published as CMS version {}: {} serves {}'s users; {} redirects them", version,
                       partner, pool, pool));
  Announce(log, WaitForVersion(connection, version), version);
  if (!as_json) std::printf("Pool %s is failed over to %s.\n", pool.c_str(), partner.c_str());
  report["cms_version"] = version;
  Finish(log, as_json, report);
}

void Failback(const ConnectionOptions& connection, const std::string& pool, bool disaster, int timeout, bool as_json) {
  StepLog log(as_json);
  json plan = Check(connection, "failback", pool, disaster);
  std::string serving = plan["partner"];
  log.Step(fmt::format("checked: {}'s users return from {} ({} mode)", pool, serving, disaster ? "disaster" : "planned"));
  json report{{"pool", pool}, {"served_by_until_now", serving}, {"disaster", disaster}};
  if (!disaster) {
    RefuseChanges(connection, serving, pool, true, fmt::format("pool {}'s users are being failed back", pool));
    log.Step(fmt::format("{} refuses persistent changes for {}'s users", serving, pool));
    if (plan.value("failed_over_in_disaster_mode", false)) {
      // What the pool accepted that the serving pool never got is set aside (to be
      // exported, never merged), and its rows are replaced by the serving pool's.
      json set_aside = CallJson(connection, "POST", fmt::format("/backup/set-aside?pool={}", Q(pool)));
      log.Step(fmt::format("{} set aside {} divergent records (`tandem backup divergent --pool {}` exports them)",
                           pool, set_aside["set_aside"].dump(), pool));
      CallJson(connection, "POST", fmt::format("/backup/resend?pool={}&home={}", Q(serving), Q(pool)));
      log.Step(fmt::format("{} sent {} every row of its users as it holds them", serving, pool));
    }
    json drained;
    try {
      drained = Drain(connection, serving, timeout);
    } catch (const CommandFailure& failure) {
      RefuseChanges(connection, serving, pool, false, "");
      Fail(failure.message + fmt::format("; {} accepts changes again and still serves {}'s users", serving, pool));
    }
    log.Step(fmt::format("every change {} made is applied on {}: {}", serving, pool, drained.dump()));
    report["applied_seq"] = drained;
  } else {
    json lost = json::object();
    for (const json& module : InboundModules(connection, serving, pool)) {
      lost[module["module"].get<std::string>()] = {{"applied_seq", module.value("applied_seq", json(0))},
                                                   {"newest_applied_seconds_ago", module.value("lag_seconds", json())}};
    }
    report["lost"] = lost;
    log.Step(fmt::format("{} resumes with what it applied of {}: {}; changes made on {} after those are lost", pool,
                         serving, lost.dump(), serving));
  }
  int64_t version = PublishRouting(connection, "failback", pool, disaster, json::object());
  log.Step(fmt::format("routing published as CMS version {}: {} serves its users again", version, pool));
  Announce(log, WaitForVersion(connection, version), version);
  RefuseChanges(connection, pool, pool, false, "");
  if (!disaster) RefuseChanges(connection, serving, pool, false, "");
  log.Step(fmt::format("persistent changes for {}'s users are accepted again", pool));
  if (!as_json) std::printf("Pool %s is failed back.\n", pool.c_str());
  report["cms_version"] = version;
  Finish(log, as_json, report);
}

}  // namespace

void AddPoolFailoverCommands(CLI::App& pool, ConnectionOptions& connection, bool& as_json) {
  struct Options {
    std::string pool;
    bool disaster = false;
    int timeout = 120;
  };
  for (const char* action : {"failover", "failback"}) {
    static Options options[2];
    Options& o = options[std::string(action) == "failover" ? 0 : 1];
    auto* command = pool.add_subcommand(
        action, std::string(action) == "failover" ? "serve a pool's users from its backup pool (Invoke-CsPoolFailover)"
                                                  : "serve a failed-over pool's users at home again (Invoke-CsPoolFailback)");
    command->add_option("--pool", o.pool, "FQDN of the pool that homes the users")->required();
    command->add_flag("--disaster", o.disaster, "the other pool is unreachable: switch with what was copied");
    command->add_option("--timeout", o.timeout, "seconds to wait for the drain (default 120)");
    command->callback([&connection, &as_json, &o, action] {
      if (std::string(action) == "failover") {
        Failover(connection, o.pool, o.disaster, o.timeout, as_json);
      } else {
        Failback(connection, o.pool, o.disaster, o.timeout, as_json);
      }
    });
  }
}

}  // namespace tandem
