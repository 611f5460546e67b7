// `opd data arith ...`: make synthetic arithmetic task data (JSONL prompts, scratchpad
// responses and reference answers).
#include <CLI/CLI.hpp>

#include "app/commands.hpp"
#include "core/log.hpp"
#include "data/arith_task.hpp"

namespace opd::app {

void add_data_command(CLI::App& app, int& status) {
  auto* data = app.add_subcommand("data", "Make task data");
  data->require_subcommand(1);
  auto* arith = data->add_subcommand("arith", "Multi-digit addition/multiplication with scratchpads");
  auto spec = std::make_shared<data::ArithSpec>();
  auto out = std::make_shared<std::string>();
  auto ops = std::make_shared<std::string>("+");
  spec->count = 1000;
  arith->add_option("--out", *out, "Output JSONL file")->required();
  arith->add_option("--count", spec->count, "Number of examples")->capture_default_str();
  arith->add_option("--seed", spec->seed, "Random seed")->capture_default_str();
  arith->add_option("--ops", *ops, "Operations, e.g. + or +* ")->capture_default_str();
  arith->add_option("--min-digits", spec->min_digits, "Fewest digits per operand")->capture_default_str();
  arith->add_option("--max-digits", spec->max_digits, "Most digits per operand")->capture_default_str();
  arith->add_option("--scratchpad", spec->scratchpad, "none | steps | columns")->capture_default_str();
  arith->add_option("--marker", spec->marker, "answer (Answer: X) | boxed (\\boxed{X})")->capture_default_str();
  arith->callback([spec, out, ops, &status] {
    spec->ops.assign(ops->begin(), ops->end());
    data::validate(*spec);
    auto examples = data::make_arith(*spec);
    data::write_jsonl(examples, *out);
    core::log::info("wrote ", examples.size(), " examples to ", *out);
    status = 0;
  });
}

}  // namespace opd::app
