#include "testing/tiny_job.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "testing/process.hpp"

namespace opd::testing {

void make_arith_data(const std::filesystem::path& dir, int count) {
  for (auto [name, n, seed] : {std::tuple{"train.jsonl", count, 1}, std::tuple{"test.jsonl", 40, 2}}) {
    auto r = run_opd("data arith --out " + std::string(name) + " --count " + std::to_string(n) +
                         " --seed " + std::to_string(seed) + " --max-digits 2",
                     dir);
    if (r.status != 0) throw std::runtime_error("opd data arith failed: " + r.err);
  }
}

std::string tiny_job(const std::string& run_dir, int steps, int every) {
  return "[run]\ndir = \"" + run_dir + "\"\nseed = 7\n\n"
         "[model.tiny]\nd_model = 32\nn_layers = 1\nn_heads = 2\nd_ff = 64\nmax_seq_len = 48\n\n"
         "[[stage]]\nname = \"pretrain\"\nkind = \"pretrain\"\nmodel = \"tiny\"\n"
         "data = \"train.jsonl\"\nsteps = " + std::to_string(steps) +
         "\nbatch_size = 8\nseq_len = 40\nlog_every = 5\n"
         "[stage.optim]\nlr = 3e-3\nwarmup = 2\nschedule = \"cosine\"\nweight_decay = 0.1\n"
         "[stage.checkpoint]\nevery = " + std::to_string(every) + "\nkeep_last = 3\n\n"
         "[[stage]]\nname = \"eval\"\nkind = \"eval\"\nmodel = \"@pretrain\"\n"
         "data = \"test.jsonl\"\nmax_new_tokens = 30\nlimit = 8\n";
}

std::string tiny_distill_job(const std::string& run_dir, int steps, int every,
                             const std::string& signal, const std::string& objective) {
  return "[run]\ndir = \"" + run_dir + "\"\nseed = 5\n\n"
         "[model.teacher]\nd_model = 32\nn_layers = 1\nn_heads = 2\nd_ff = 64\nmax_seq_len = 48\n"
         "[model.student]\nd_model = 16\nn_layers = 1\nn_heads = 2\nd_ff = 32\nmax_seq_len = 48\n\n"
         "[[stage]]\nname = \"teacher\"\nkind = \"pretrain\"\nmodel = \"teacher\"\n"
         "data = \"train.jsonl\"\nsteps = 6\nbatch_size = 8\nseq_len = 40\n\n"
         "[[stage]]\nname = \"student\"\nkind = \"pretrain\"\nmodel = \"student\"\n"
         "data = \"train.jsonl\"\nsteps = 3\nbatch_size = 8\nseq_len = 40\n\n"
         "[[stage]]\nname = \"distill\"\nkind = \"distill\"\nmodel = \"@student\"\n"
         "teacher = \"@teacher\"\ndata = \"train.jsonl\"\nsteps = " + std::to_string(steps) +
         "\nprompts_per_step = 3\nsamples_per_prompt = 2\nsignal = \"" + signal +
         "\"\ntopk = 4\nlog_every = 1\n"
         "[stage.rollout]\nmax_new_tokens = 12\n"
         "[stage.objective]\n" + objective + "\n"
         "[stage.checkpoint]\nevery = " + std::to_string(every) + "\nkeep_last = 3\n"
         "[stage.eval]\ndata = \"test.jsonl\"\nevery = 2\nlimit = 4\nmax_new_tokens = 12\n";
}

std::string edit(std::string text, const std::string& from, const std::string& to) {
  const auto at = text.find(from);
  if (at == std::string::npos) throw std::runtime_error("edit: '" + from + "' not in the text");
  return text.replace(at, from.size(), to);
}

void expect_same_run(const std::vector<nlohmann::json>& a, const std::vector<nlohmann::json>& b,
                     double tol) {
  ASSERT_EQ(a.size(), b.size());
  ASSERT_FALSE(a.empty());
  for (std::size_t i = 0; i < a.size(); ++i)
    for (const auto& [key, va] : a[i].items()) {
      if (key.rfind("time_", 0) == 0 || key == "tokens_per_second" || key == "step_seconds" ||
          key == "comm_seconds")
        continue;
      ASSERT_TRUE(b[i].contains(key)) << key;
      if (key == "response_tokens" || key == "rollout_accuracy" || key == "response_length" ||
          va.is_null()) {
        EXPECT_EQ(va, b[i][key]) << key << " at row " << i + 1;
        continue;
      }
      const double x = va.get<double>(), y = b[i][key].get<double>();
      const double t = key == "loss" || key == "grad_norm" ? tol : 3 * tol;
      EXPECT_LE(std::abs(x - y), t * std::max(1.0, std::abs(x))) << key << " at row " << i + 1;
    }
}

}  // namespace opd::testing
