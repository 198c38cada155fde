#include "cli_common.h"

#include <fmt/format.h>
#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>

#include "ecomla/error.h"

namespace ecomla::cli {

at::ScalarType parse_dtype(const std::string& name) {
  if (name == "fp32") return at::kFloat;
  if (name == "bf16") return at::kBFloat16;
  throw CLI::ValidationError("--dtype", "must be fp32 or bf16, got '" + name + "'");
}

LoadedModel load_for_compute(const std::string& path, const ComputeOptions& compute) {
  const at::ScalarType type = parse_dtype(compute.dtype);
  const at::Device device = parse_device(compute.device);
  const auto t0 = std::chrono::steady_clock::now();
  LoadedModel loaded = load_model(path);
  loaded.model->to(device, type);
  fmt::print(stderr, "loaded {} ({}) in {:.1f} s, compute {} on {}\n", path, loaded.format,
             std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
             compute.dtype, device.str());
  return loaded;
}

void add_decode_weights_option(CLI::App& cmd, std::string& weights) {
  cmd.add_option("--weights", weights,
                 "Decode weights: int4 (4-bit copy, fast), dense, or auto (int4 when the "
                 "GGUF stores them as 4-bit, bf16 on CPU)")
      ->check(CLI::IsMember({"auto", "int4", "dense"}))
      ->capture_default_str();
}

void use_decode_weights(LoadedModel& loaded, const ComputeOptions& compute,
                        const std::string& weights) {
  const bool bf16_cpu = compute.dtype == "bf16" && loaded.model->device().is_cpu();
  if (weights == "int4" && !bf16_cpu) {
    throw CLI::ValidationError("--weights int4", "needs --dtype bf16 on the CPU");
  }
  if (weights == "int4" || (weights == "auto" && bf16_cpu && loaded.stored_as_4bit)) {
    fmt::print(stderr, "decoding with 4-bit weights ({} projections packed)\n",
               loaded.model->pack_int4());
  }
}

at::Device parse_device(const std::string& name) {
  try {
    const at::Device device(name);
    if (!device.is_cpu() && !device.is_cuda()) throw std::invalid_argument(name);
    return device;
  } catch (const std::exception&) {
    throw CLI::ValidationError("--device", "must be cpu, cuda or cuda:N, got '" + name + "'");
  }
}

void add_compute_options(CLI::App& cmd, ComputeOptions& compute, const std::string& dtype) {
  compute.dtype = dtype;
  cmd.add_option("--dtype", compute.dtype, "fp32 or bf16")->capture_default_str();
  cmd.add_option("--device", compute.device, "cpu, cuda or cuda:N (needs a CUDA libtorch)")
      ->capture_default_str();
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FormatError(path + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void emit_json(const nlohmann::json& j, const std::string& path) {
  if (path.empty()) {
    std::cout << j.dump(2) << std::endl;
    return;
  }
  std::ofstream out(path);
  out << j.dump(2) << "\n";
  if (!out) throw std::runtime_error("cannot write " + path);
}

}  // namespace ecomla::cli
