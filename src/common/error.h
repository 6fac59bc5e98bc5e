// The one error model of tandem: functions that can fail on the data path return
// Result<T> (std::expected<T, Error>) or Status (Result<void>). Untrusted input
// (network, files) is rejected with an Error, never with an exception or a crash.
// Broken internal invariants abort via TANDEM_CHECK.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <expected>
#include <string>
#include <string_view>
#include <utility>

namespace tandem {

enum class ErrorCode {
  kInvalidArgument,     // the caller's input is wrong (bad file, bad request)
  kNotFound,            // the thing asked for does not exist
  kAlreadyExists,       // creating something that is already there
  kFailedPrecondition,  // the system is not in a state that allows this now
  kUnavailable,         // a peer or a resource cannot be reached; may work later
  kPermissionDenied,    // missing or wrong credentials
  kIoError,             // the operating system refused (file, socket)
  kCorruption,          // stored or received data fails its checks
  kTimeout,             // did not finish in the time allowed
  kInternal,            // a bug; should not happen
};

std::string_view ErrorCodeName(ErrorCode code);

// What failed and why, as one sentence an operator can act on.
struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;

  std::string ToString() const;
};

template <typename T>
using Result = std::expected<T, Error>;
using Status = std::expected<void, Error>;

inline std::unexpected<Error> MakeError(ErrorCode code, std::string message) {
  return std::unexpected<Error>(Error{code, std::move(message)});
}

inline Status OkStatus() { return {}; }

}  // namespace tandem

// Aborts loudly when an internal invariant is broken (never for untrusted input).
#define TANDEM_CHECK(cond)                                                        \
  do {                                                                            \
    if (!(cond)) {                                                                \
      std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                               \
    }                                                                             \
  } while (0)
