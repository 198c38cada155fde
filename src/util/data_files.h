// Reading the data files of evaluation and training sets: text lines, jsonl or JSON-array
// records, RFC 4180 csv, label files, and typed fields, every failure a FormatError naming the
// file and line. Also the two Python string operations task definitions are written in.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ecomla::data_files {

// Python's str.strip() without arguments (ASCII whitespace).
std::string strip(const std::string& s);
// Python's str.replace: every non-overlapping match, left to right, in one pass.
void replace_all(std::string& s, const std::string& from, const std::string& to);

std::string read_text(const std::filesystem::path& path);
// Lines without their "\n" (and a "\r" before it).
std::vector<std::string> read_lines(const std::filesystem::path& path);

struct Record {
  nlohmann::json value;
  std::string origin;  // "file:line" (or "file: record N" in a JSON array)
};
// jsonl (one object per non-empty line), or a .json file holding an array of objects.
std::vector<Record> read_records(const std::filesystem::path& path);

// Rows of an RFC 4180 csv (quoted fields may hold commas, "" and newlines), each with its
// "file:line".
std::vector<std::pair<std::vector<std::string>, std::string>> read_csv(
    const std::filesystem::path& path);

// One integer per non-empty line (PIQA's and WinoGrande's label files).
std::vector<int64_t> read_labels(const std::filesystem::path& path);

struct LabeledRecord {
  Record record;
  int64_t label = 0;
};
// The records of `data` with their labels: from the labels file the PIQA and WinoGrande
// releases put next to their data (valid.jsonl -> valid-labels.lst) when there is one, else
// from each record's `key` (the Hugging Face layouts). FormatError when the counts differ or
// a record has no label.
std::vector<LabeledRecord> labeled_records(const std::filesystem::path& data,
                                           const std::string& key);

// Typed fields of a record; `origin` names it in errors.
std::string text_of(const nlohmann::json& record, const std::string& key,
                    const std::string& origin);
std::vector<std::string> strings_of(const nlohmann::json& value, const std::string& what,
                                    const std::string& origin);
// An integer stored as a number, a boolean or a numeric string (Hugging Face "label": "3").
int64_t integer_of(const nlohmann::json& record, const std::string& key, const std::string& origin);

}  // namespace ecomla::data_files
