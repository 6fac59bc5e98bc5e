// tandem: the management CLI. All logic lives in src/cli/.
#include "cli/commands.h"

int main(int argc, char** argv) { return tandem::RunCli(argc, argv); }
