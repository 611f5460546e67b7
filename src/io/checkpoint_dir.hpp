// io/checkpoint_dir.hpp: CheckpointDir, the directory of one stage's checkpoints
// (`RUN/<stage>/checkpoints/`): step file names, the `latest` pointer, finding what to resume
// from, and pruning old checkpoints (DESIGN.md §7).
//
// Files: `step_00000120.h5` (published), `step_00000120.h5.tmp` (being written, or left by a
// crash: never loaded), `latest` (one line: the file name of the last published checkpoint).
// Single-writer: in a parallel run only rank 0 calls publish() and prune(), after the barrier
// that ends a checkpoint write.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace opd::io {

class CheckpointDir {
 public:
  explicit CheckpointDir(std::string dir);  // touches nothing on disk

  const std::string& dir() const { return dir_; }
  // DIR/step_%08d.h5
  std::string path_for_step(int64_t step) const;
  // "step_00000120.h5" -> 120; anything else (including a .tmp) -> nullopt.
  static std::optional<int64_t> step_of(const std::string& file_name);

  // Points `latest` at step's (already committed) checkpoint: writes `latest.tmp`, fsyncs,
  // renames over `latest`, fsyncs the directory, so `latest` is always whole and always names
  // a file that is on disk.
  void publish(int64_t step) const;

  // The checkpoint to resume from: the file `latest` names if it exists, is not a .tmp and opens
  // as a valid checkpoint; otherwise the newest valid step_*.h5; otherwise nullopt (fresh
  // start). When it falls back and `note` is given, *note says why (for the log).
  std::optional<std::string> latest_path(std::string* note = nullptr) const;

  // Steps of the published step_*.h5 files present, ascending (validity not checked).
  std::vector<int64_t> published_steps() const;

  // Deletes published checkpoints except the newest `keep_last`, every step divisible by
  // `keep_every` (0: no such rule) and the one `latest` names; also deletes stale *.tmp files.
  // Call only when no checkpoint is being written. Returns the paths it deleted.
  std::vector<std::string> prune(int64_t keep_last, int64_t keep_every) const;

 private:
  std::optional<std::string> latest_name() const;  // the trimmed content of `latest`
  std::string dir_;
};

}  // namespace opd::io
