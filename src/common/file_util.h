// Small file helpers shared by every module: whole-file reads and crash-safe writes.
// Thread-safe (no shared state).
#pragma once

#include <string>
#include <sys/types.h>

#include "common/error.h"

namespace tandem {

// Reads a whole file. kNotFound if it does not exist, kIoError otherwise.
Result<std::string> ReadFile(const std::string& path);

// Writes `contents` to `path` so that a crash leaves either the old or the new
// file, never a torn one (write a temporary, fsync, rename). `mode` applies to the
// new file (e.g. 0600 for secrets).
Status WriteFileAtomically(const std::string& path, std::string_view contents, mode_t mode = 0644);

// Creates a directory and its parents; succeeds if it already exists.
Status MakeDirectories(const std::string& path);

}  // namespace tandem
