// opd: on-policy distillation of language models. Entry point: MPI and backend start-up, the
// subcommands, and the one place where errors become exit statuses (2: bad input, 1: internal).
#include <CLI/CLI.hpp>
#include <cstdio>

#include "app/commands.hpp"
#include "backend/ops.hpp"
#include "comm/mpi_runtime.hpp"
#include "core/error.hpp"
#include "core/log.hpp"

int main(int argc, char** argv) {
  opd::comm::MpiRuntime mpi(&argc, &argv);
  opd::core::log::set_rank(mpi.rank());
  int status = 0;
  try {
    opd::backend::Runtime runtime;
    CLI::App app{"opd: on-policy distillation of language models on CPUs and GPUs, one MPI job"};
    app.require_subcommand(1);
    opd::app::add_run_command(app, status);
    opd::app::add_data_command(app, status);
    opd::app::add_generate_command(app, status);
    opd::app::add_inspect_command(app, status);
    opd::app::add_bench_command(app, status);
    opd::app::add_convert_command(app, status);
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      const int rc = app.exit(e);
      return rc == 0 ? 0 : 2;
    }
  } catch (const opd::Error& e) {
    std::fprintf(stderr, "opd: error: %s\n", e.what());
    if (mpi.size() > 1) opd::comm::abort_all(e.exit_status());
    return e.exit_status();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "opd: internal error: %s\n", e.what());
    if (mpi.size() > 1) opd::comm::abort_all(1);
    return 1;
  }
  return status;
}
