#include "train/data_parallel.h"

// ProcessGroupGloo.hpp is only compiled with USE_C10D_GLOO (libtorch's own build flag); its
// gloo headers come from Debian's libgloo-dev, while the gloo code itself is the copy inside
// libtorch_cpu, so no gloo library is linked.
#define USE_C10D_GLOO 1
#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <fmt/format.h>
#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace ecomla::train {

struct DataParallel::Group {
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
};

namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value && *value ? std::string(value) : fallback;
}

int env_int(const char* name, int fallback) {
  const std::string text = env_or(name, std::to_string(fallback));
  try {
    size_t used = 0;
    const int value = std::stoi(text, &used);
    if (used == text.size()) return value;
  } catch (const std::exception&) {
  }
  throw std::invalid_argument(fmt::format("{}={} is not an integer", name, text));
}

// torchrun's agent hosts the TCPStore on MASTER_PORT and its workers join it as clients under
// a per-restart prefix (torch.distributed.rendezvous, _create_c10d_store); launched by hand,
// rank 0 hosts it.
c10::intrusive_ptr<c10d::Store> rendezvous_store(int rank, int world_size) {
  c10d::TCPStoreOptions options;
  options.port = static_cast<uint16_t>(env_int("MASTER_PORT", 29500));
  options.numWorkers = world_size;
  options.timeout = std::chrono::seconds(env_int("ECOMLA_DIST_TIMEOUT_S", 300));
  const bool agent_store = env_or("TORCHELASTIC_USE_AGENT_STORE", "") == "True";
  options.isServer = !agent_store && rank == 0;
  const std::string host = env_or("MASTER_ADDR", "127.0.0.1");
  c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::TCPStore>(host, options);
  if (!agent_store) return store;
  return c10::make_intrusive<c10d::PrefixStore>(
      "/worker/attempt_" + env_or("TORCHELASTIC_RESTART_COUNT", "0"), store);
}

}  // namespace

DataParallel DataParallel::from_environment() {
  DataParallel dp;
  dp.world_size_ = env_int("WORLD_SIZE", 1);
  dp.rank_ = env_int("RANK", 0);
  if (dp.world_size_ < 1 || dp.rank_ < 0 || dp.rank_ >= dp.world_size_) {
    throw std::invalid_argument(fmt::format(
        "RANK={} and WORLD_SIZE={}: need 0 <= RANK < WORLD_SIZE", dp.rank_, dp.world_size_));
  }
  if (dp.world_size_ == 1) return dp;
  try {
    auto options = c10d::ProcessGroupGloo::Options::create();
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(
        env_or("ECOMLA_GLOO_HOSTNAME", env_or("MASTER_ADDR", "127.0.0.1"))));
    dp.group_ = std::make_shared<Group>();
    dp.group_->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(
        rendezvous_store(dp.rank_, dp.world_size_), dp.rank_, dp.world_size_, options);
  } catch (const c10::Error& e) {
    throw std::runtime_error(fmt::format("data parallel: process {} of {} could not join: {}",
                                         dp.rank_, dp.world_size_, e.what_without_backtrace()));
  }
  return dp;
}

void DataParallel::all_reduce_sum(at::Tensor& tensor) const {
  if (!group_) return;
  std::vector<at::Tensor> tensors{tensor};
  group_->gloo->allreduce(tensors)->wait();
}

void DataParallel::average_gradients(const std::vector<at::Tensor>& parameters) const {
  if (!group_) return;
  std::vector<at::Tensor> grads;
  grads.reserve(parameters.size());
  for (const at::Tensor& p : parameters) {
    if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
    grads.push_back(p.grad());
  }
  group_->gloo->allreduce_coalesced(grads)->wait();
  for (at::Tensor& g : grads) g.div_(world_size_);
}

void DataParallel::broadcast_from_main(const std::vector<at::Tensor>& tensors) const {
  if (!group_) return;
  std::vector<at::Tensor> flat_views;
  for (const at::Tensor& t : tensors) flat_views.push_back(t.detach().reshape({-1}));
  std::vector<at::Tensor> flat{at::cat(flat_views)};  // one message instead of one per tensor
  group_->gloo->broadcast(flat)->wait();
  int64_t offset = 0;
  for (const at::Tensor& t : tensors) {
    t.detach().copy_(flat[0].narrow(0, offset, t.numel()).view(t.sizes()));
    offset += t.numel();
  }
}

void DataParallel::barrier() const {
  if (group_) group_->gloo->barrier()->wait();
}

}  // namespace ecomla::train
