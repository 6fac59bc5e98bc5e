// The Backup Service's status as `tandem backup status` shows it. Each pool
// computes its own view from its own store — what it exported and what the partner
// acknowledged, what it imported, the errors its servers recorded — so any of its
// servers answers the same; a pool's status combines its view with the partner's
// into one entry per direction and module (the JSON contract of DESIGN.md §3).
//
// Export states: NotInitialized (the partner was never reached), SteadyState
// (nothing older than the sync interval is unacknowledged), NonSteadyState (older
// changes wait, or an initial sync runs), ErrorState (the last attempt failed; the
// reason is in last_error). FinalState is reserved for a read-only, fully drained
// source (pool failover). Import states: NormalState, ErrorState.
//
// Thread-safety: free functions.
#pragma once

#include <chrono>
#include <cstdint>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "backup/pairing.h"
#include "common/error.h"
#include "store/store.h"

namespace tandem {

// The settings key holding the divergent records of `module` set aside (a JSON array).
std::string DivergentRecordsSettingKey(std::string_view module);

// For a pool returning after a disaster failover, before it is failed back: moves
// the records it accepted after the partner took its users over (divergent: the
// partner never got them) out of the change log into DivergentRecordsSettingKey,
// where they stay to be exported, and marks them as never to ship. Returns how
// many were set aside.
// The cutoff (what the partner had applied at the failover) is a position in the
// change log the partner's copy follows. Modules in `rebuilt_modules` are those
// whose partner copy follows another log (this store was rebuilt since): nothing in
// this log is divergent then — it was all written after the loss, while the partner
// served this pool's users — and the partner gets a snapshot of it instead.
Result<int64_t> SetAsideDivergentRecords(Store& store, const Pairing& pairing, int64_t now_ms,
                                         const std::set<std::string>& rebuilt_modules = {});

Result<nlohmann::json> LocalBackupView(Store& store, const Pairing& pairing, std::chrono::milliseconds sync_interval,
                                       int64_t now_ms);

// `remote` is the partner's LocalBackupView, or why it could not be had.
nlohmann::json CombineBackupViews(const Pairing& pairing, const nlohmann::json& local,
                                  const Result<nlohmann::json>& remote, int64_t now_ms);

}  // namespace tandem
