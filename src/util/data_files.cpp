// Reading the data files of evaluation and training sets; see data_files.h.
#include "util/data_files.h"

#include <fmt/format.h>
#include <fstream>

#include "ecomla/error.h"
#include "io/json_util.h"

namespace ecomla::data_files {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {
constexpr const char* kWhitespace = " \t\n\r\v\f";  // Python's str.strip() (ASCII)

}  // namespace

std::string strip(const std::string& s) {
  const size_t first = s.find_first_not_of(kWhitespace);
  if (first == std::string::npos) return "";
  return s.substr(first, s.find_last_not_of(kWhitespace) + 1 - first);
}

// Python's str.replace: every non-overlapping match, left to right, in one pass.
void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) {
    s.replace(at, from.size(), to);
  }
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FormatError(path.string() + ": cannot open");
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<std::string> read_lines(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FormatError(path.string() + ": cannot open");
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(std::move(line));
  }
  return lines;
}

// jsonl (one object per non-empty line) or a .json array of objects.
std::vector<Record> read_records(const fs::path& path) {
  std::vector<Record> records;
  if (path.extension() == ".json") {
    const json all = io::read_json(path);
    if (!all.is_array()) throw FormatError(path.string() + ": expected a JSON array of records");
    for (size_t i = 0; i < all.size(); ++i) {
      records.push_back({all[i], fmt::format("{}: record {}", path.string(), i + 1)});
    }
    return records;
  }
  const std::vector<std::string> lines = read_lines(path);
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].find_first_not_of(" \t") == std::string::npos) continue;
    const std::string origin = fmt::format("{}:{}", path.string(), i + 1);
    try {
      records.push_back({json::parse(lines[i]), origin});
    } catch (const json::exception& e) {
      throw FormatError(origin + ": not a JSON object: " + e.what());
    }
    if (!records.back().value.is_object()) throw FormatError(origin + ": not a JSON object");
  }
  return records;
}

// RFC 4180 CSV (quoted fields may hold commas, "" and newlines); each row with its line.
std::vector<std::pair<std::vector<std::string>, std::string>> read_csv(const fs::path& path) {
  const std::string text = read_text(path);
  std::vector<std::pair<std::vector<std::string>, std::string>> rows;
  std::vector<std::string> row(1);
  bool quoted = false;
  int64_t line = 1, row_line = 1;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n') ++line;
    if (quoted) {
      if (c != '"') {
        row.back() += c;
      } else if (i + 1 < text.size() && text[i + 1] == '"') {
        row.back() += '"';
        ++i;
      } else {
        quoted = false;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      row.emplace_back();
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') continue;
      if (row.size() > 1 || !row[0].empty()) {
        rows.emplace_back(std::move(row), fmt::format("{}:{}", path.string(), row_line));
      }
      row.assign(1, "");
      row_line = line;
    } else {
      row.back() += c;
    }
  }
  if (quoted)
    throw FormatError(fmt::format("{}:{}: unterminated quoted field", path.string(), row_line));
  if (row.size() > 1 || !row[0].empty()) {
    rows.emplace_back(std::move(row), fmt::format("{}:{}", path.string(), row_line));
  }
  return rows;
}

// One integer per non-empty line (PIQA's and WinoGrande's label files).
std::vector<int64_t> read_labels(const fs::path& path) {
  std::vector<int64_t> labels;
  const std::vector<std::string> lines = read_lines(path);
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].empty()) continue;
    try {
      size_t used = 0;
      labels.push_back(std::stoll(lines[i], &used));
      if (used != lines[i].size()) throw std::invalid_argument("trailing text");
    } catch (const std::exception&) {
      throw FormatError(fmt::format("{}:{}: expected an integer label, got '{}'", path.string(),
                                    i + 1, lines[i]));
    }
  }
  return labels;
}

std::vector<LabeledRecord> labeled_records(const fs::path& data, const std::string& key) {
  std::vector<Record> records = read_records(data);
  const std::string labels_name = data.stem().string() + "-labels.lst";
  const fs::path labels_path = data.parent_path() / labels_name;
  std::optional<std::vector<int64_t>> labels;
  if (fs::exists(labels_path)) labels = read_labels(labels_path);
  if (labels && labels->size() != records.size()) {
    throw FormatError(fmt::format("{}: {} records but {} labels in its -labels.lst", data.string(),
                                  records.size(), labels->size()));
  }
  std::vector<LabeledRecord> out;
  for (size_t i = 0; i < records.size(); ++i) {
    Record& r = records[i];
    if (!labels && !r.value.contains(key)) {
      throw FormatError(r.origin + ": no '" + key + "', and no labels file " + labels_name +
                        " next to it");
    }
    const int64_t label = labels ? (*labels)[i] : integer_of(r.value, key, r.origin);
    out.push_back({std::move(r), label});
  }
  return out;
}

std::string text_of(const json& record, const std::string& key, const std::string& origin) {
  return io::get<std::string>(record, key, origin);
}

std::vector<std::string> strings_of(const json& value, const std::string& what,
                                    const std::string& origin) {
  if (!value.is_array()) throw FormatError(origin + ": '" + what + "' must be a list of strings");
  std::vector<std::string> out;
  for (const json& v : value) {
    if (!v.is_string()) throw FormatError(origin + ": '" + what + "' must be a list of strings");
    out.push_back(v.get<std::string>());
  }
  return out;
}

// An integer that files store as a number or as a numeric string (Hugging Face "label": "3").
int64_t integer_of(const json& record, const std::string& key, const std::string& origin) {
  if (!record.contains(key)) throw FormatError(origin + ": missing key '" + key + "'");
  const json& v = record.at(key);
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_boolean()) return v.get<bool>() ? 1 : 0;
  if (v.is_string()) {
    try {
      size_t used = 0;
      const int64_t i = std::stoll(v.get<std::string>(), &used);
      if (used == v.get<std::string>().size()) return i;
    } catch (const std::exception&) {
    }
  }
  throw FormatError(origin + ": key '" + key + "' must be an integer");
}

}  // namespace ecomla::data_files
