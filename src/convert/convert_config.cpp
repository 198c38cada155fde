// Conversion config files (YAML) with X-EcoMLA's keys, and layer lists.
#include "convert/convert_config.h"

#include <fmt/format.h>

#include <set>

#include "ecomla/error.h"
#include "util/data_files.h"
#include "util/yaml_config.h"

namespace ecomla {

using yaml_config::value;

ConvertConfig read_convert_config(const std::string& path) {
  return convert_config_from(yaml_config::load_mapping(path), path);
}

ConvertConfig convert_config_from(const YAML::Node& root, const std::string& path) {
  ConvertConfig c;
  ConvertOptions& o = c.options;
  bool init_given = false, svd = true;
  for (const auto& entry : root) {
    const std::string key = entry.first.as<std::string>();
    const YAML::Node& v = entry.second;
    if (key == "mla_layers") {
      o.mla_layers = value<std::vector<int64_t>>(v, key, path);
    } else if (key == "q_lora_rank") {
      o.q.rank = v.IsNull() ? 0 : value<int64_t>(v, key, path);
    } else if (key == "kv_lora_rank") {
      o.kv.rank = value<int64_t>(v, key, path);
    } else if (key == "q_energy_ratio") {
      if (!v.IsNull()) o.q.energy = value<double>(v, key, path);
    } else if (key == "kv_energy_ratio") {
      if (!v.IsNull()) o.kv.energy = value<double>(v, key, path);
    } else if (key == "qk_rope_head_dim") {
      o.dim_rope = value<int64_t>(v, key, path);
    } else if (key == "qk_nope_head_dim") {
      o.dim_nope = value<int64_t>(v, key, path);
    } else if (key == "v_head_dim") {
      o.dim_v = value<int64_t>(v, key, path);
    } else if (key == "use_lora_layer_norm") {
      o.latent_norm = value<bool>(v, key, path);
    } else if (key == "use_fixed_rank_for_first_and_last_block") {
      o.fixed_rank_first_last = value<bool>(v, key, path);
    } else if (key == "init_with_svd") {
      svd = value<bool>(v, key, path);
    } else if (key == "init") {
      o.init = parse_mla_init(value<std::string>(v, key, path));
      init_given = true;
    } else if (key == "kv_budget") {
      o.kv_budget = value<double>(v, key, path);
    } else if (key == "calib") {
      c.calib = value<std::string>(v, key, path);
    } else if (key == "calib_tokens") {
      c.calib_tokens = value<int64_t>(v, key, path);
    } else if (key == "calib_ctx") {
      c.calib_ctx = value<int64_t>(v, key, path);
    } else {
      c.ignored_keys.push_back(key);
    }
  }
  if (!svd) {
    throw FormatError(path +
                      ": init_with_svd: false (random MLA weights) is not supported; "
                      "ecomla always initialises from the trained weights");
  }
  // An X-EcoMLA config (init_with_svd, no ecomla init key) asks for its own initialisation.
  if (!init_given && root["init_with_svd"]) o.init = MlaInit::kXEcoMla;
  return c;
}

std::optional<Calibration> load_calibration(const ConvertConfig& c, const Tokenizer& tokenizer) {
  if (c.options.init != MlaInit::kActivation) return std::nullopt;
  if (c.calib.empty()) {
    throw std::invalid_argument(
        "the activation init needs calibration text: --calib FILE (any text in the model's "
        "domain, e.g. ../shared/data/wikitext2/validation/wiki.valid.tokens), or use "
        "--init xecomla");
  }
  return make_calibration(tokenizer.encode(data_files::read_text(c.calib), false), c.calib_ctx,
                          c.calib_tokens);
}

std::vector<int64_t> parse_layer_list(const std::string& text, int64_t n_layer) {
  std::vector<int64_t> layers;
  if (text == "all") {
    for (int64_t l = 0; l < n_layer; ++l) layers.push_back(l);
    return layers;
  }
  size_t start = 0;
  while (start <= text.size()) {
    const size_t end = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, end - start);
    try {
      size_t used = 0;
      const int64_t first = std::stoll(item, &used);
      int64_t last = first;
      if (used < item.size() && item[used] == '-') {
        const std::string rest = item.substr(used + 1);
        size_t used_last = 0;
        last = std::stoll(rest, &used_last);
        if (used_last != rest.size()) throw std::invalid_argument(item);
      } else if (used != item.size()) {
        throw std::invalid_argument(item);
      }
      for (int64_t l = first; l <= last; ++l) layers.push_back(l);
    } catch (const std::logic_error&) {
      throw std::invalid_argument("bad layer list '" + text + "': expected 'all' or e.g. 0,2,5-9");
    }
    start = end + 1;
  }
  return layers;
}

}  // namespace ecomla
