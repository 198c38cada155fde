// Pieces shared by the subcommands.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <string>

#include "ecomla/model_loader.h"

namespace ecomla::cli {

// Each subcommand adds itself to the app and sets its callback.
void add_inspect(CLI::App& app);
void add_convert(CLI::App& app);
void add_tokenize(CLI::App& app);
void add_perplexity(CLI::App& app);
void add_eval(CLI::App& app);
void add_distill(CLI::App& app);
void add_dpo(CLI::App& app);
void add_generate(CLI::App& app);
void add_synth(CLI::App& app);
void add_recipe(CLI::App& app);

struct ComputeOptions {
  std::string dtype = "fp32";  // fp32 | bf16
  std::string device = "cpu";  // cpu | cuda | cuda:N
};
// Adds --dtype (with the command's default) and --device.
void add_compute_options(CLI::App& cmd, ComputeOptions& compute, const std::string& dtype);
// "fp32" or "bf16" -> dtype; throws CLI::ValidationError otherwise.
at::ScalarType parse_dtype(const std::string& name);
at::Device parse_device(const std::string& name);
// Loads a model and moves its weights to the compute device and dtype, reporting on stderr.
LoadedModel load_for_compute(const std::string& path, const ComputeOptions& compute);
// Adds --weights auto|int4|dense, the weights decoding reads.
void add_decode_weights_option(CLI::App& cmd, std::string& weights);
// Packs the 4-bit decode copy when --weights asks for it (auto: a 4-bit GGUF in bf16 on the
// CPU), reporting on stderr; throws CLI::ValidationError for int4 without bf16 on the CPU.
void use_decode_weights(LoadedModel& loaded, const ComputeOptions& compute,
                        const std::string& weights);
// Reads a whole text file; throws FormatError naming the file.
std::string read_text_file(const std::string& path);
// Writes JSON to stdout (pretty) or to `path` when not empty.
void emit_json(const nlohmann::json& j, const std::string& path = "");

}  // namespace ecomla::cli
