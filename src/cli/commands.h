// The `tandem` management CLI: builds the command tree (CLI11) and runs one
// command. Every command prints human-readable output by default and JSON with
// --json, exits 0 on success, and on failure prints one sentence to stderr (what
// failed, why, what to do) and exits non-zero.
#pragma once

namespace tandem {

int RunCli(int argc, char** argv);

}  // namespace tandem
