#include "distill/objective_config.hpp"

#include "core/error.hpp"

namespace opd::distill {

using backend::ObjectiveKind;
using backend::Signal;

Signal signal_mode(const std::string& name) {
  if (name == "sampled") return Signal::Sampled;
  if (name == "topk") return Signal::TopK;
  if (name == "full") return Signal::Full;
  internal_error("signal_mode", "unknown signal " + name);
}

backend::ObjectiveArgs objective_args(const ObjectiveConfig& c) {
  backend::ObjectiveArgs a;
  const std::string& k = c.kind;
  a.kind = k == "pg_sampled" ? ObjectiveKind::PgSampled
         : k == "pg_topk"    ? ObjectiveKind::PgTopK
         : k == "topk_rkl"   ? ObjectiveKind::TopKRkl
         : k == "full_rkl"   ? ObjectiveKind::FullRkl
         : k == "fkl"        ? ObjectiveKind::Fkl
         : k == "jsd"        ? ObjectiveKind::Jsd
                             : ObjectiveKind::Sft;
  a.support = c.support == "student"        ? backend::Support::Student
            : c.support == "teacher"        ? backend::Support::Teacher
            : c.support == "intersection"   ? backend::Support::Intersection
            : c.support == "union"          ? backend::Support::Union
                                            : backend::Support::SymDiff;
  a.weight = c.weights == "student_p"   ? backend::SupportWeight::StudentP
           : c.weights == "teacher_p"   ? backend::SupportWeight::TeacherP
                                        : backend::SupportWeight::Uniform;
  a.teacher_weight = static_cast<float>(c.teacher_weight);
  a.use_ratio = c.importance;
  a.clip = static_cast<float>(c.clip);
  a.beta = static_cast<float>(c.beta);
  a.tail = c.tail;
  return a;
}

void check_objective(const DistillConfig& c, const std::string& where) {
  const ObjectiveConfig& o = c.objective;
  auto need = [&](bool ok, const std::string& what, const std::string& hint) {
    if (!ok) input_error(where, what, hint);
  };
  const bool full = c.signal == "full", topk = c.signal == "topk";
  need(!(o.kind == "full_rkl" || o.kind == "jsd") || full,
       "objective '" + o.kind + "' needs the full-vocabulary teacher signal, the job asks for '" +
           c.signal + "'",
       "set signal = \"full\"");
  need(!(o.kind == "pg_topk" || o.kind == "topk_rkl" || o.kind == "fkl") || full || topk,
       "objective '" + o.kind + "' needs the teacher's log-probs at top-k ids, the job asks for '" +
           c.signal + "'",
       "set signal = \"topk\" (or \"full\")");
  need(o.baseline != "kl_full" || full, "baseline 'kl_full' needs signal = \"full\"",
       "use baseline = \"kl_topk\" with signal = \"topk\"");
  need(o.baseline != "kl_topk" || full || topk, "baseline 'kl_topk' needs signal = \"topk\" or \"full\"",
       "set signal = \"topk\"");
  need(o.baseline == "none" || o.kind == "pg_sampled" || o.kind == "pg_topk",
       "a baseline applies to the policy-gradient objectives only (pg_sampled, pg_topk)",
       "remove baseline or use a pg_* objective");
  need(!o.tail || (o.kind == "fkl" && topk), "tail applies to fkl with signal = \"topk\" only",
       "remove tail");
  need(o.support == "student" || o.kind == "pg_topk", "support applies to pg_topk only",
       "remove support");
  need(o.kind != "pg_sampled" || o.teacher_weight != 0.0 || o.reward_weight != 0.0,
       "pg_sampled with teacher_weight = 0 and reward_weight = 0 has nothing to learn from",
       "set reward_weight > 0 for RL with verifiable rewards");
}

}  // namespace opd::distill
