// Zero-shot evaluation tasks with lm-evaluation-harness's definitions (its lm_eval/tasks YAML
// and utils): the prompt template of each task, the target delimiter " ", the choices and the
// metrics. A task turns each document of its data file into log-likelihood requests
// (context, continuation); scoring them is loglikelihood.h's job, metrics eval_metrics.h's.
//
// Data files are read in the formats people have (see docs/eval.md): the original AI2, PIQA,
// HellaSwag, BoolQ, LAMBADA, MMLU, OpenBookQA and WinoGrande releases, the Hugging Face
// dataset layouts, the MosaicML reformatted jsonl and llama.cpp's HellaSwag text.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace ecomla {

// lm-eval's output types of the tasks here.
enum class OutputType {
  kMultipleChoice,        // one request per choice; acc (and acc_norm) from the argmax
  kLoglikelihood,         // one request; acc = greedy match, perplexity over documents
  kLoglikelihoodRolling,  // the whole document; word/byte perplexity, bits per byte
};

// log P(continuation | context); the context may be empty (then the BOS token conditions).
struct Request {
  std::string context, continuation;
};

struct Document {
  std::string origin;                // "file:line", for errors and logged samples
  std::vector<Request> requests;     // one per choice for multiple choice
  std::vector<std::string> choices;  // multiple choice: acc_norm divides by their length
  int64_t gold = 0;                  // index of the right choice
  int64_t words = 0, bytes = 0;      // rolling: of the document before detokenization
};

struct Task {
  std::string name;   // e.g. "arc_easy", "mmlu_anatomy"
  std::string group;  // "mmlu_stem", ... for MMLU subjects; empty otherwise
  OutputType type = OutputType::kMultipleChoice;
  std::vector<std::string> metrics;  // lm-eval metric names, in its order
  std::string template_text;         // doc_to_text as in lm-eval's YAML (for the results config)
  double version = 1.0;              // lm-eval's metadata.version
  std::filesystem::path source;      // the data file read
  int64_t docs_in_source = 0;        // before --limit
  std::vector<Document> docs;
};

struct TaskOptions {
  std::filesystem::path data_dir;  // laid out as ../shared/data: <task>/<split>/<file>
  std::map<std::string, std::filesystem::path> task_files;  // task name -> the user's file
  int64_t limit = -1;  // the first N documents of each task (-1: all)
};

// The task names load_tasks() accepts: the tasks, "mmlu" (all 57 subjects) and
// "mmlu_<subject>".
std::vector<std::string> known_task_names();

// Loads the named tasks (expanding "mmlu"), in the order given. Throws std::invalid_argument
// for an unknown name (listing the known ones) and FormatError naming the file and line for
// missing or malformed data.
std::vector<Task> load_tasks(const std::vector<std::string>& names, const TaskOptions& options);

// The MMLU groups the subjects roll up into ("mmlu_humanities", ...), and how many subjects
// one of them has (a group is reported only when all of them ran, as lm-eval reports a group
// only when it was asked for).
const std::vector<std::string>& mmlu_groups();
int64_t mmlu_group_size(const std::string& group);

// lm-eval's hellaswag utils.preprocess: strips, turns " [title]" into ". ", drops the other
// [bracketed] WikiHow markers and collapses double spaces.
std::string hellaswag_preprocess(std::string text);
// lm-eval's wikitext_detokenizer (preprocess_wikitext.py).
std::string wikitext_detokenize(std::string text);

}  // namespace ecomla
