// Where weights come from: a WeightSource serves fp32 tensors by their canonical Hugging Face
// name, in the Hugging Face layout (in the style of CTranslate2's ModelReader). Format readers
// implement it; load_weights() fills a model from one and checks every name and shape.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace torch::nn {
class Module;
}

namespace ecomla {

class WeightSource {
public:
  virtual ~WeightSource() = default;
  virtual std::string origin() const = 0;  // file or folder, for error messages
  virtual std::vector<std::string> names() const = 0;
  // Shape of a tensor in PyTorch order, or nullopt when the source has no such tensor.
  virtual std::optional<std::vector<int64_t>> shape(const std::string& name) const = 0;
  // The tensor as fp32 on the CPU; throws FormatError when absent or unreadable.
  virtual at::Tensor load(const std::string& name) const = 0;
};

// Tensors held in memory (tests, conversion results).
class MemoryWeightSource : public WeightSource {
public:
  explicit MemoryWeightSource(std::map<std::string, at::Tensor> tensors,
                              std::string origin = "memory")
      : tensors_(std::move(tensors)), origin_(std::move(origin)) {}
  std::string origin() const override { return origin_; }
  std::vector<std::string> names() const override;
  std::optional<std::vector<int64_t>> shape(const std::string& name) const override;
  at::Tensor load(const std::string& name) const override;

private:
  std::map<std::string, at::Tensor> tensors_;
  std::string origin_;
};

using TensorShapes = std::map<std::string, std::vector<int64_t>>;

// Checks that `source` holds exactly the tensors `expected` names, with those shapes; throws
// FormatError naming the source and the first tensor that is missing, misshapen or unexpected
// (a sign of a wrong config). Done before a model is built, so a corrupt config cannot make
// the loader allocate a model the file does not hold.
void verify_weights(const WeightSource& source, const TensorShapes& expected);

// Copies every parameter of `model` from `source` (converted to the parameter's dtype).
// Throws FormatError naming the source and tensor when one is missing or has the wrong shape,
// and when the source holds tensors the model does not expect (a sign of a wrong config).
void load_weights(torch::nn::Module& model, const WeightSource& source);

// The model's parameters as a name -> tensor map (views, not copies).
std::map<std::string, at::Tensor> state_dict(const torch::nn::Module& model);

}  // namespace ecomla
