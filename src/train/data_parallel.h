// Data parallelism across processes with libtorch's own c10d: Gloo on the CPU, rendezvous
// through a TCPStore configured by torchrun's environment, so that
//   torchrun --no-python --nproc-per-node N ecomla distill cfg.yaml
// runs N processes, each on its own slice of every global batch. Gradients are averaged after
// backward (one coalesced all-reduce, as DDP's buckets), so every process takes the same
// optimiser step and the run equals one process with the same global batch.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <vector>

namespace ecomla::train {

class DataParallel {
public:
  // A single process: every collective is the identity.
  DataParallel() = default;

  // From torchrun's variables: RANK, WORLD_SIZE, MASTER_ADDR (default 127.0.0.1), MASTER_PORT
  // (default 29500), TORCHELASTIC_USE_AGENT_STORE (torchrun hosts the store itself). A single
  // process when WORLD_SIZE is unset or 1. Throws std::invalid_argument for inconsistent
  // values and std::runtime_error when the processes cannot meet.
  static DataParallel from_environment();

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  bool is_main() const { return rank_ == 0; }

  // In place: the sum over the processes of a dense CPU tensor of each of them.
  void all_reduce_sum(at::Tensor& tensor) const;
  // The parameters' gradients replaced by their mean over the processes (an undefined gradient
  // counts as zero).
  void average_gradients(const std::vector<at::Tensor>& parameters) const;
  // Every process gets the main process's values, in place (at start, so that all replicas
  // begin from the same weights).
  void broadcast_from_main(const std::vector<at::Tensor>& tensors) const;
  void barrier() const;

private:
  struct Group;
  std::shared_ptr<Group> group_;  // null for a single process
  int rank_ = 0, world_size_ = 1;
};

}  // namespace ecomla::train
