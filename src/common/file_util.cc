#include "common/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

namespace tandem {

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) return MakeError(ErrorCode::kNotFound, fmt::format("{}: no such file", path));
    return MakeError(ErrorCode::kIoError, fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return MakeError(ErrorCode::kIoError, fmt::format("{}: read failed", path));
  return buffer.str();
}

Status WriteFileAtomically(const std::string& path, std::string_view contents, mode_t mode) {
  std::string temp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) {
    return MakeError(ErrorCode::kIoError, fmt::format("{}: cannot create: {}", temp, std::strerror(errno)));
  }
  ::fchmod(fd, mode);  // the umask must not widen or narrow what the caller asked for
  size_t written = 0;
  while (written < contents.size()) {
    ssize_t n = ::write(fd, contents.data() + written, contents.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      int saved = errno;
      ::close(fd);
      ::unlink(temp.c_str());
      return MakeError(ErrorCode::kIoError, fmt::format("{}: write failed: {}", temp, std::strerror(saved)));
    }
    written += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(temp.c_str());
    return MakeError(ErrorCode::kIoError, fmt::format("{}: fsync failed: {}", temp, std::strerror(errno)));
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    int saved = errno;
    ::unlink(temp.c_str());
    return MakeError(ErrorCode::kIoError, fmt::format("{}: rename failed: {}", path, std::strerror(saved)));
  }
  return OkStatus();
}

Status MakeDirectories(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return MakeError(ErrorCode::kIoError, fmt::format("{}: cannot create directory: {}", path, ec.message()));
  return OkStatus();
}

}  // namespace tandem
