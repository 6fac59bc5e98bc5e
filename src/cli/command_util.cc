#include "cli/command_util.h"

#include <ctime>

namespace tandem {

void Fail(std::string message, int exit_code) { throw CommandFailure{std::move(message), exit_code}; }

void OrFail(const Status& status) {
  if (!status) Fail(status.error().message);
}

nlohmann::json CallJson(const ConnectionOptions& connection, std::string_view method, std::string_view path,
                        std::string_view body) {
  AdminTarget target = OrFail(ResolveAdminTarget(connection));
  HttpResponse response = OrFail(CallAdmin(target, method, path, body));
  if (response.status / 100 != 2) Fail(AdminErrorMessage(response));
  auto parsed = nlohmann::json::parse(response.body, nullptr, false);
  if (parsed.is_discarded()) Fail("the server answered with something that is not JSON");
  return parsed;
}

std::string FormatTime(int64_t unix_ms) {
  if (unix_ms == 0) return "never";
  std::time_t seconds = unix_ms / 1000;
  std::tm tm{};
  ::gmtime_r(&seconds, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof(buffer), "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buffer;
}

}  // namespace tandem
