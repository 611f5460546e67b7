// Rank-aware logging: see log.hpp.
#include "core/log.hpp"

#include <atomic>
#include <iostream>
#include <mutex>

namespace opd::core::log {

namespace {
std::atomic<int> g_rank{0};
std::atomic<bool> g_all_ranks{false};
std::atomic<bool> g_quiet{false};
std::mutex g_mutex;
}  // namespace

void set_rank(int rank) { g_rank = rank; }
void set_all_ranks(bool all) { g_all_ranks = all; }
void set_quiet(bool quiet) { g_quiet = quiet; }
int rank() { return g_rank; }

bool enabled(Level level) {
  // An error may be the only sign of why a non-zero rank stopped, so it always prints.
  if (level == Level::Error) return true;
  if (g_quiet) return false;
  return g_all_ranks || g_rank == 0;
}

void write(Level level, const std::string& message) {
  std::string line = "[opd] ";
  // A rank tag whenever lines may come from several ranks: all-ranks mode, or an error (which
  // prints on every rank).
  if (g_all_ranks || (level == Level::Error && g_rank != 0))
    line += "[rank " + std::to_string(g_rank.load()) + "] ";
  if (level == Level::Warn) line += "warning: ";
  if (level == Level::Error) line += "error: ";
  line += message;
  line += '\n';
  std::lock_guard<std::mutex> lock(g_mutex);
  std::ostream& os = level == Level::Info ? std::cout : std::cerr;
  os << line;
  os.flush();  // a crash or MPI abort must not lose the last lines
}

}  // namespace opd::core::log
