// tandemd: one tandem Front End server. All logic lives in src/server/.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "server/server.h"

int main(int argc, char** argv) {
  CLI::App app{"tandemd: a tandem Front End server"};
  tandem::ServerOptions options;
  options.data_dir = "./tandem-data";
  app.add_option("--topology", options.topology_path, "topology file (TOML)")->required();
  app.add_option("--server", options.server_id, "id of this server in the topology")->required();
  app.add_option("--data-dir", options.data_dir, "data directory shared by the servers of this host");
  app.add_option("--token-file", options.token_file, "admin token file (default: DATA_DIR/admin.token)");
  CLI11_PARSE(app, argc, argv);

  spdlog::set_pattern(fmt::format("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [{}] %v", options.server_id));
  auto server = tandem::Server::Start(options);
  if (!server) {
    spdlog::error("cannot start: {}", server.error().message);
    std::fprintf(stderr, "tandemd: %s\n", server.error().message.c_str());
    return 1;
  }
  (*server)->Run();
  return 0;
}
