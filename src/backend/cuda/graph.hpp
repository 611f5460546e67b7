// A CUDA graph of the ops a function issues on stream(), with the device memory they allocate
// kept in a pool of its own (device.hpp): backend/recording.cpp records and replays decode steps
// with it.
#pragma once

#include <functional>
#include <memory>
#include <string>

namespace opd::backend::cuda {

class GraphPool;

class Graph {
 public:
  Graph();
  ~Graph();
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  // Records fn's ops (fn runs once, its kernels do not). false, with `why`, the capture abandoned
  // and the CUDA error state cleared, when something fn does cannot be captured; fn's host-side
  // effects (and an exception it threw) are then for the caller to redo by running it plainly.
  bool capture(const std::function<void()>& fn, std::string& why);
  // Runs the recorded ops on stream().
  void launch();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace opd::backend::cuda
