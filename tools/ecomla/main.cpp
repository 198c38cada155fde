// ecomla: upcycle a trained Llama-family model's attention into Multi-head Latent Attention.
// One binary, one subcommand per file (cmd_*.cpp). Errors end here: message, hint, exit 1.
#include <ATen/Parallel.h>

#include <fmt/format.h>
#include <thread>

#include "cli_common.h"
#include "ecomla/allocator.h"

int main(int argc, char** argv) {
  ecomla::keep_freed_memory();
  CLI::App app{"ecomla: convert trained attention into Multi-head Latent Attention (MLA)"};
  app.require_subcommand(1);
  int threads = 0;
  app.add_option("--threads", threads, "CPU threads (default: all cores)");
  ecomla::cli::add_inspect(app);
  ecomla::cli::add_convert(app);
  ecomla::cli::add_tokenize(app);
  ecomla::cli::add_perplexity(app);
  ecomla::cli::add_eval(app);
  ecomla::cli::add_distill(app);
  ecomla::cli::add_dpo(app);
  ecomla::cli::add_generate(app);
  ecomla::cli::add_synth(app);
  ecomla::cli::add_recipe(app);
  app.parse_complete_callback([&] {
    at::set_num_threads(threads > 0 ? threads
                                    : static_cast<int>(std::thread::hardware_concurrency()));
  });
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
