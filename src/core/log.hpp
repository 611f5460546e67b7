// Rank-aware logging: by default only rank 0 prints (errors print on every rank), with an "[opd]"
// prefix; info goes to stdout, warnings and errors to stderr.
#pragma once

#include <string>

#include "core/error.hpp"

namespace opd::core::log {

enum class Level { Info, Warn, Error };

void set_rank(int rank);        // this process's world rank (default 0)
void set_all_ranks(bool all);   // print on every rank, prefixed "[rank N]"
void set_quiet(bool quiet);     // drop info and warnings (tests); errors still print
int rank();

// Whether a message of this level would be printed here: callers with costly messages can check
// first (info/warn/error already check before formatting).
bool enabled(Level level);
// Print one message (a trailing newline is added). Serialised by one mutex so that lines from
// different threads do not interleave.
void write(Level level, const std::string& message);

template <class... Args>
void info(const Args&... args) {
  if (enabled(Level::Info)) write(Level::Info, opd::detail::concat(args...));
}
template <class... Args>
void warn(const Args&... args) {
  if (enabled(Level::Warn)) write(Level::Warn, opd::detail::concat(args...));
}
template <class... Args>
void error(const Args&... args) {
  if (enabled(Level::Error)) write(Level::Error, opd::detail::concat(args...));
}

}  // namespace opd::core::log
