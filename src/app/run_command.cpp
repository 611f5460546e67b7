// `opd run JOB.toml [--set k=v]...`: validate the whole job, then run (or resume) its stages in
// order, skipping finished ones. Exit 3 asks the launcher to resubmit (signal or wall time).
#include <CLI/CLI.hpp>
#include <filesystem>
#include <fstream>

#include "app/commands.hpp"
#include "app/job_config.hpp"
#include "backend/ops.hpp"
#include "comm/mpi_runtime.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "data/tokenizer.hpp"
#include "distill/stage.hpp"
#include "distill/stop_condition.hpp"

namespace opd::app {

namespace fs = std::filesystem;

namespace {

int run_job(const std::string& path, const std::vector<std::string>& overrides) {
  distill::JobConfig job = load_job(path, overrides);
  // Sharded layouts (tensor, pipeline, data parallelism) are not built yet: several ranks would
  // all write the same run directory.
  if (comm::world_size() > 1)
    input_error("opd run", "launched on " + std::to_string(comm::world_size()) +
                               " ranks, but this version runs a job on one rank",
                "launch with one rank (mpirun -np 1, srun -n 1)");
  backend::set_blas_threads(job.run.threads);
  auto tok = data::make_tokenizer(job.tokenizer);
  // Everything is read and checked before anything is written: bad input leaves RUN as it was.
  // A stage that reads what an earlier stage has yet to write is checked just before it runs.
  std::vector<std::unique_ptr<distill::Stage>> stages;
  std::vector<bool> prepared;
  for (const auto& s : job.stages) {
    stages.push_back(distill::make_stage(job, s, *tok));
    const bool now = !distill::stage_done(job, s.name) && !distill::waits_for_data(job, s);
    if (now) stages.back()->prepare();
    prepared.push_back(now);
  }
  fs::create_directories(job.run.dir);
  {
    const fs::path saved = fs::path(job.run.dir) / "job.toml";
    std::ofstream(saved.string() + ".tmp") << job.toml_text;
    fs::rename(saved.string() + ".tmp", saved);
  }
  distill::StopCondition::install_signal_handlers();
  distill::StopCondition stop(job.run.walltime, job.run.walltime_margin);
  for (std::size_t i = 0; i < stages.size(); ++i) {
    const auto& name = job.stages[i].name;
    if (distill::stage_done(job, name)) {
      core::log::info("stage ", name, " is done, skipping");
      continue;
    }
    core::log::info("stage ", name, " (", job.stages[i].kind, ")");
    if (!prepared[i]) stages[i]->prepare();
    if (stages[i]->run(stop) == distill::StageOutcome::Interrupted) return distill::kExitResubmit;
  }
  core::log::info("job finished: ", job.run.dir);
  return 0;
}

}  // namespace

void add_run_command(CLI::App& app, int& status) {
  auto* cmd = app.add_subcommand("run", "Run or resume the stages of a job file");
  auto path = std::make_shared<std::string>();
  auto sets = std::make_shared<std::vector<std::string>>();
  cmd->add_option("job", *path, "The job file (TOML)")->required();
  cmd->add_option("--set", *sets, "Override a job setting: --set stage.pretrain.steps=100")
      ->take_all();
  cmd->callback([path, sets, &status] { status = run_job(*path, *sets); });
}

}  // namespace opd::app
