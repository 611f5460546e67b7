// The `opd` subcommands (DESIGN.md §8). Each returns the process exit status; input errors are
// thrown as opd::Error and turned into status 2 by main().
#pragma once

#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace opd::app {

// Registers each subcommand with its options on `app`; the callback runs it and stores its exit
// status in `status`.
void add_run_command(CLI::App& app, int& status);
void add_data_command(CLI::App& app, int& status);
void add_generate_command(CLI::App& app, int& status);
void add_inspect_command(CLI::App& app, int& status);
void add_bench_command(CLI::App& app, int& status);
void add_convert_command(CLI::App& app, int& status);

}  // namespace opd::app
