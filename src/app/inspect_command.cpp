// `opd inspect CKPT`: a checkpoint's metadata, layout and tensors.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "app/commands.hpp"
#include "io/inspect.hpp"

namespace opd::app {

void add_inspect_command(CLI::App& app, int& status) {
  auto* cmd = app.add_subcommand("inspect", "Show a checkpoint's metadata, layout and tensors");
  auto path = std::make_shared<std::string>();
  cmd->add_option("checkpoint", *path, "An opd checkpoint (.h5)")->required();
  cmd->callback([path, &status] {
    std::fputs(io::inspect_checkpoint(*path).c_str(), stdout);
    status = 0;
  });
}

}  // namespace opd::app
