// ecomla tokenize MODEL (--text STR | --file F) [--json] [--special]: token ids and pieces.
#include <fmt/format.h>

#include <iostream>

#include "cli_common.h"

namespace ecomla::cli {

void add_tokenize(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenize", "Token ids (and pieces) of a text");
  static std::string model, text, file;
  static bool json = false, special = false, add_special = false;
  cmd->add_option("MODEL", model, "GGUF file or Hugging Face model folder")->required();
  auto* text_opt = cmd->add_option("--text", text, "Text to tokenize");
  auto* file_opt = cmd->add_option("--file", file, "File whose contents to tokenize");
  text_opt->excludes(file_opt);
  cmd->add_flag("--json", json, "Print JSON");
  cmd->add_flag("--special", special, "Parse control tokens written in the text");
  cmd->add_flag("--add-special", add_special, "Add BOS/EOS as the model declares");
  cmd->callback([text_opt, file_opt] {
    if (text_opt->count() == 0 && file_opt->count() == 0) {
      throw CLI::RequiredError("--text or --file");
    }
    const Tokenizer tok = load_tokenizer(model);
    const std::string input = file_opt->count() ? read_text_file(file) : text;
    const std::vector<int32_t> ids = tok.encode(input, add_special, special);
    if (json) {
      nlohmann::json pieces = nlohmann::json::array();
      for (int32_t id : ids) pieces.push_back(tok.piece(id));
      // A piece can be part of a UTF-8 sequence; JSON shows those bytes as U+FFFD.
      std::cout << nlohmann::json{{"n_tokens", ids.size()}, {"ids", ids}, {"pieces", pieces}}.dump(
                       2, ' ', false, nlohmann::json::error_handler_t::replace)
                << std::endl;
      return;
    }
    for (int32_t id : ids) {
      fmt::print("{:6d}  {}\n", id,
                 nlohmann::json(tok.piece(id))
                     .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }
    fmt::print(stderr, "{} tokens\n", ids.size());
  });
}

}  // namespace ecomla::cli
