// Pieces shared by the subcommands.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <string>

#include "ecomla/model_loader.h"

namespace ecomla::cli {

// Each subcommand adds itself to the app and sets its callback.
void add_inspect(CLI::App& app);
void add_tokenize(CLI::App& app);
void add_perplexity(CLI::App& app);
void add_generate(CLI::App& app);

// "fp32" or "bf16" -> dtype; throws CLI::ValidationError otherwise.
at::ScalarType parse_dtype(const std::string& name);
// Loads a model and casts its weights to the compute dtype, reporting time on stderr.
LoadedModel load_for_compute(const std::string& path, const std::string& dtype);
// Reads a whole text file; throws FormatError naming the file.
std::string read_text_file(const std::string& path);
// Writes JSON to stdout (pretty) or to `path` when not empty.
void emit_json(const nlohmann::json& j, const std::string& path = "");

}  // namespace ecomla::cli
