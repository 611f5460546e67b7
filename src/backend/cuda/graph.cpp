// Graph (graph.hpp): stream capture in relaxed mode (ops may still allocate device memory while
// they are recorded; the pool keeps those blocks for the graph), instantiation and launch.
#include "backend/cuda/graph.hpp"

#include <cuda_runtime.h>

#include <exception>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device.hpp"

namespace opd::backend::cuda {

struct Graph::Impl {
  cudaGraphExec_t exec = nullptr;
  std::unique_ptr<GraphPool> pool;
  ~Impl() {
    if (exec) cudaGraphExecDestroy(exec);
  }
};

Graph::Graph() : impl_(std::make_unique<Impl>()) {}
Graph::~Graph() = default;

bool Graph::capture(const std::function<void()>& fn, std::string& why) {
  Impl& m = *impl_;
  m.pool = std::make_unique<GraphPool>();
  check(cudaStreamBeginCapture(stream(), cudaStreamCaptureModeRelaxed), "cudaStreamBeginCapture");
  m.pool->activate();
  bool threw = false;
  try {
    fn();
  } catch (const std::exception& e) {
    threw = true;
    why = e.what();
  }
  m.pool->deactivate();
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(stream(), &graph);
  cudaError_t made = cudaSuccess;
  if (!threw && ended == cudaSuccess) made = cudaGraphInstantiate(&m.exec, graph, 0);
  if (graph) cudaGraphDestroy(graph);
  if (threw || ended != cudaSuccess || made != cudaSuccess) {
    if (!threw) why = cudaGetErrorString(ended != cudaSuccess ? ended : made);
    cudaGetLastError();  // capture errors are not sticky: clear the last one
    if (m.exec) cudaGraphExecDestroy(m.exec);
    m.exec = nullptr;
    m.pool.reset();
    return false;
  }
  return true;
}

void Graph::launch() { check(cudaGraphLaunch(impl_->exec, stream()), "cudaGraphLaunch"); }

}  // namespace opd::backend::cuda
