// io/inspect.hpp: inspect_checkpoint, a human-readable summary of one checkpoint file for
// `opd inspect` (format, root attributes, state scalars, strings, and a table of tensors with
// statistics and per-group parameter totals).
#pragma once

#include <string>

namespace opd::io {

// Reads the whole file (one tensor at a time). Throws the CheckpointReader's Input errors for a
// missing or unreadable file; a tensor failing its checksum is reported in the table instead,
// since finding such damage is what inspecting is for.
std::string inspect_checkpoint(const std::string& path);

}  // namespace opd::io
