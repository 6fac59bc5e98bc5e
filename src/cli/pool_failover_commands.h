// `tandem pool failover|failback --pool P [--disaster]` (Invoke-CsPoolFailover /
// Invoke-CsPoolFailback): the CLI runs the steps, printing each with its timing:
//   failover (planned): check the rules; P refuses persistent changes for its users;
//     drain P's Backup Service to FinalState (`backup sync`, repeated until the heads
//     stop moving); publish the routing change (P's users served by its backup pool
//     Q, new routing epoch); wait until every reachable server has it.
//   failover --disaster: check; read what Q applied of P (sequence and age); publish
//     the routing change with those sequences (P's later changes are divergent);
//     report the bound on what may be lost.
//   failback (planned): check; Q refuses persistent changes for P's users; drain Q
//     to P; publish the routing change (P serves its users again); both accept
//     changes again.
//   failback --disaster: Q is unreachable: P resumes with what it applied of Q; the
//     changes made on Q after that are reported lost.
// Refusals (the ordering rule, no backup pool, not failed over, CMS master) come
// from dr/routing_rules.h and change nothing.
//
// Thread-safety: command setup and callbacks run on the CLI's one thread.
#pragma once

#include <CLI/CLI.hpp>

#include "cli/admin_target.h"

namespace tandem {

// Adds `failover` and `failback` to the existing `pool` subcommand.
void AddPoolFailoverCommands(CLI::App& pool, ConnectionOptions& connection, bool& as_json);

}  // namespace tandem
