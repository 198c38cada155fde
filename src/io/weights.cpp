#include "ecomla/weights.h"

#include <torch/nn/module.h>

#include "ecomla/error.h"

namespace ecomla {
namespace {

std::string shape_string(at::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

std::vector<std::string> MemoryWeightSource::names() const {
  std::vector<std::string> out;
  for (const auto& [name, tensor] : tensors_) out.push_back(name);
  return out;
}

std::optional<std::vector<int64_t>> MemoryWeightSource::shape(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) return std::nullopt;
  return it->second.sizes().vec();
}

at::Tensor MemoryWeightSource::load(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw FormatError(origin_ + ": no tensor '" + name + "'");
  return it->second.to(at::kFloat);
}

void verify_weights(const WeightSource& source, const TensorShapes& expected) {
  for (const auto& [name, want] : expected) {
    const auto shape = source.shape(name);
    if (!shape) throw FormatError(source.origin() + ": missing tensor '" + name + "'");
    if (*shape != want) {
      throw FormatError(source.origin() + ": tensor '" + name + "' has shape " +
                        shape_string(*shape) + ", the model config expects " + shape_string(want));
    }
  }
  for (const std::string& name : source.names()) {
    if (!expected.contains(name)) {
      throw FormatError(source.origin() + ": unexpected tensor '" + name +
                        "' (does the config match the weights?)");
    }
  }
}

void load_weights(torch::nn::Module& model, const WeightSource& source) {
  at::NoGradGuard no_grad;
  TensorShapes expected;
  for (const auto& item : model.named_parameters()) {
    expected.emplace(item.key(), item.value().sizes().vec());
  }
  verify_weights(source, expected);
  for (auto& item : model.named_parameters()) item.value().copy_(source.load(item.key()));
}

std::map<std::string, at::Tensor> state_dict(const torch::nn::Module& model) {
  std::map<std::string, at::Tensor> out;
  for (const auto& item : model.named_parameters()) out.emplace(item.key(), item.value());
  return out;
}

}  // namespace ecomla
