// The client side of the link between paired pools: a request signed with the
// pairing secret (see batch_codec.h) sent to whichever server of the partner pool
// answers. The receiving side is BackupLinkServer.
//
// Thread-safety: free functions; call from any thread.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "backup/pairing.h"
#include "common/error.h"
#include "store/store.h"

namespace tandem {

// Adds params["source"] (the local pool) and the signature, sends, and returns the
// JSON object the partner answered with 200. Anything else is an error naming the
// partner and its reason.
Result<nlohmann::json> CallPartner(const Pairing& pairing, const std::string& secret, std::string_view method,
                                   std::string_view path, std::map<std::string, std::string> params,
                                   std::string_view body, std::chrono::milliseconds timeout);

// The identity of this store's change log: random, made the first time it is asked
// for. A store rebuilt from nothing (a pool that lost its store) has a new log whose
// sequences start again at 1, so a partner's progress in the old one means nothing:
// the partner records which log its copy follows, and a different one means a
// fresh snapshot.
Result<std::string> LocalChangeLogId(Store& store);
inline constexpr std::string_view kChangeLogIdSetting = "backup.change_log_id";
// Whether a copy that reached `position` (an applied sequence, or a failover's
// cutoff) in the log `followed_log` follows another log than `this_log`, whose head
// is `head_seq`: its position is then no position in this log. A copy from before
// logs had identities (either id empty) tells it by claiming more than the log holds.
bool FollowsAnotherLog(int64_t position, std::string_view followed_log, std::string_view this_log, int64_t head_seq);

// The setting, in the importing pool's store, naming the log its copy of
// `source_pool`'s `module` follows.
std::string SourceLogSettingKey(std::string_view source_pool, std::string_view module);

}  // namespace tandem
