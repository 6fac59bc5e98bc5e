// What every `tandem` command shares: ending a command with one clear sentence,
// calling the admin API of a running system, formatting times.
//
// CLI11 is exception-based, so inside command callbacks a failure is thrown as a
// CommandFailure and caught once in RunCli, which prints "tandem: <message>" and
// exits non-zero. Nothing outside src/cli/ throws.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "cli/admin_target.h"
#include "common/error.h"

namespace tandem {

struct CommandFailure {
  std::string message;
  int exit_code = 1;
};

[[noreturn]] void Fail(std::string message, int exit_code = 1);

template <typename T>
T OrFail(Result<T> result) {
  if (!result) Fail(result.error().message);
  return std::move(*result);
}

void OrFail(const Status& status);

// Calls the admin API; fails the command with the server's error message on a
// non-2xx answer. Returns the JSON body.
nlohmann::json CallJson(const ConnectionOptions& connection, std::string_view method, std::string_view path,
                        std::string_view body = "");

// "2026-11-22 23:37:52 UTC", or "never" for 0.
std::string FormatTime(int64_t unix_ms);

}  // namespace tandem
