// tandem: the management CLI. All logic lives in src/cli/ (and src/drill/).
#include "cli/commands.h"
#include "cli/drill_command.h"

int main(int argc, char** argv) { return tandem::RunCli(argc, argv, {tandem::AddDrillCommand}); }
