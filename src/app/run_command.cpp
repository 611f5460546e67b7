// `opd run JOB.toml [--set k=v]...`: validate the whole job, then run (or resume) its stages in
// order, skipping finished ones. Exit 3 asks the launcher to resubmit (signal or wall time).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <fstream>

#include "app/commands.hpp"
#include "app/job_config.hpp"
#include "backend/ops.hpp"
#include "comm/communicator.hpp"
#include "comm/device_group.hpp"
#include "comm/topology.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "data/tokenizer.hpp"
#include "distill/stage.hpp"
#include "distill/stop_condition.hpp"

namespace opd::app {

namespace fs = std::filesystem;

namespace {

// Runs `work` on every rank and agrees on the outcome: if any rank met bad input, the first such
// rank prints its message and every rank returns false, so a failure on one rank never leaves
// the others waiting in a collective.
bool agree(const comm::Communicator& world, const std::function<void()>& work) {
  std::string message;
  try {
    work();
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::Input || world.size() == 1) throw;
    message = e.what();
  }
  const int mine = message.empty() ? 0 : world.size() - world.rank();
  const int worst = world.allreduce_max(mine);
  if (worst == 0) return true;
  if (world.rank() == world.size() - worst) std::fprintf(stderr, "opd: error: %s\n", message.c_str());
  return false;
}

int run_job(const std::string& path, const std::vector<std::string>& overrides) {
  const comm::Communicator world = comm::Communicator::world();
  // First: a USR1/TERM during startup (Slurm may warn early) must end in a checkpoint at the
  // first step boundary and exit 3, not kill the process.
  distill::StopCondition::install_signal_handlers();
  distill::JobConfig job;
  std::unique_ptr<comm::Topology> topo;
  if (!agree(world, [&] { job = load_job(path, overrides); })) return 2;
  if (!agree(world, [&] {
        topo = std::make_unique<comm::Topology>(job.parallel, world, job.path + ": [parallel]");
      }))
    return 2;
  backend::set_blas_threads(job.run.threads);
  if (!agree(world, [&] {
        if (job.run.device == "cuda" && comm::use_local_cuda_device() < 0)
          input_error(job.path + ": run.device", "\"cuda\" but this rank sees no CUDA device (or opd was built without CUDA)",
                      "run on a GPU node (one rank per GPU), or set run.device = \"cpu\"");
      }))
    return 2;
  auto tok = data::make_tokenizer(job.tokenizer);
  // Everything is read and checked before anything is written: bad input leaves RUN as it was.
  // A stage that reads what an earlier stage has yet to write is checked just before it runs.
  std::vector<std::unique_ptr<distill::Stage>> stages;
  std::vector<bool> prepared;
  if (!agree(world, [&] {
        for (const auto& s : job.stages) {
          stages.push_back(distill::make_stage(job, s, *tok, *topo));
          const bool now = !distill::stage_done(job, s.name) && !distill::waits_for_data(job, s);
          if (now) stages.back()->prepare();
          prepared.push_back(now);
        }
      }))
    return 2;
  if (topo->is_root()) {
    fs::create_directories(job.run.dir);
    const fs::path saved = fs::path(job.run.dir) / "job.toml";
    std::ofstream(saved.string() + ".tmp") << job.toml_text;
    fs::rename(saved.string() + ".tmp", saved);
  }
  world.barrier();
  distill::StopCondition stop(job.run.walltime, job.run.walltime_margin);
  for (std::size_t i = 0; i < stages.size(); ++i) {
    const auto& name = job.stages[i].name;
    if (distill::stage_done(job, name)) {
      core::log::info("stage ", name, " is done, skipping");
      continue;
    }
    core::log::info("stage ", name, " (", job.stages[i].kind, ")");
    if (!prepared[i]) stages[i]->prepare();
    // Stages without a data-parallel implementation run on the root rank alone; the others wait
    // for their outputs. With split placement the teacher ranks take part in distill stages only.
    distill::StageOutcome outcome = distill::StageOutcome::Done;
    const bool here = topo->role() == comm::Role::Teacher
                          ? job.stages[i].kind == "distill"
                          : stages[i]->data_parallel() || topo->is_root();
    if (here) outcome = stages[i]->run(stop);
    // Also the barrier after the stage: every rank learns whether the stage was interrupted,
    // including ranks that did not take part in it.
    if (world.allreduce_max(outcome == distill::StageOutcome::Interrupted ? 1 : 0))
      return distill::kExitResubmit;
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
