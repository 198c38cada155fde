// Task definitions: lm-evaluation-harness's lm_eval/tasks/<task>/*.yaml and utils, read from
// local files in the formats listed in docs/eval.md.
#include "ecomla/eval_tasks.h"

#include <fmt/format.h>
#include <algorithm>
#include <fstream>
#include <functional>
#include <stdexcept>

#include "ecomla/error.h"
#include "util/data_files.h"

namespace ecomla {
namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace data_files;

namespace {

// The regular expressions of lm-eval's preprocessing are written out below: std::regex
// recurses per character and overflows the stack on long inputs, so it never sees file text.

// re.sub(r"\(\s*([^\)]*?)\s*\)", r"(\1)", s) and its kin for [], {}, "" and '': drops the
// whitespace just inside each bracket pair.
std::string tighten_brackets(const std::string& s, char open, char close) {
  std::string out;
  size_t i = 0;
  while (true) {
    const size_t o = s.find(open, i);
    const size_t c = o == std::string::npos ? o : s.find(close, o + 1);
    if (c == std::string::npos) break;
    out.append(s, i, o - i);
    out += open;
    out += strip(s.substr(o + 1, c - o - 1));
    out += close;
    i = c + 1;
  }
  out.append(s, i);
  return out;
}

// re.sub("\\[.*?\\]", "", s): drops every [marker] that closes on its line.
std::string drop_bracketed(const std::string& s) {
  std::string out;
  size_t i = 0;  // the first character not copied yet
  for (size_t open = s.find('['); open != std::string::npos; open = s.find('[', open + 1)) {
    const size_t close = s.find_first_of("]\n", open + 1);
    if (close == std::string::npos || s[close] != ']') continue;
    out.append(s, i, open - i);
    i = close + 1;
    open = close;
  }
  out.append(s, i);
  return out;
}

// --- documents ---------------------------------------------------------------------------------

// A multiple-choice document with the choices in the continuation, after lm-eval's default
// target delimiter " ".
Document multiple_choice(std::string origin, const std::string& context,
                         std::vector<std::string> choices, int64_t gold) {
  if (choices.empty()) throw FormatError(origin + ": no choices");
  if (gold < 0 || gold >= static_cast<int64_t>(choices.size())) {
    throw FormatError(
        fmt::format("{}: answer index {} is outside the {} choices", origin, gold, choices.size()));
  }
  Document doc;
  doc.origin = std::move(origin);
  for (const std::string& choice : choices) doc.requests.push_back({context, " " + choice});
  doc.choices = std::move(choices);
  doc.gold = gold;
  return doc;
}

// A question with lettered (or numbered) choices and an answer key, as AI2's ARC and OpenBookQA
// releases ({"question": {"stem", "choices": [{"text", "label"}]}, "answerKey"}) and their
// Hugging Face layout ({"question" or "question_stem", "choices": {"text": [], "label": []},
// "answerKey"}).
struct KeyedQuestion {
  std::string question;
  std::vector<std::string> choices;
  int64_t gold = 0;
};

KeyedQuestion keyed_question(const Record& r) {
  const json& v = r.value;
  KeyedQuestion q;
  std::vector<std::string> labels;
  if (v.contains("question") && v.at("question").is_object()) {
    const json& question = v.at("question");
    q.question = text_of(question, "stem", r.origin);
    if (!question.contains("choices") || !question.at("choices").is_array()) {
      throw FormatError(r.origin + ": missing question.choices");
    }
    for (const json& choice : question.at("choices")) {
      q.choices.push_back(text_of(choice, "text", r.origin));
      labels.push_back(text_of(choice, "label", r.origin));
    }
  } else {
    q.question = text_of(v, v.contains("question_stem") ? "question_stem" : "question", r.origin);
    if (!v.contains("choices") || !v.at("choices").is_object()) {
      throw FormatError(r.origin + ": missing choices {text, label}");
    }
    q.choices = strings_of(v.at("choices").value("text", json()), "choices.text", r.origin);
    labels = strings_of(v.at("choices").value("label", json()), "choices.label", r.origin);
  }
  std::string key = text_of(v, "answerKey", r.origin);
  key.erase(0, key.find_first_not_of(" \t"));  // OpenBookQA's answerKey.lstrip()
  const auto it = std::find(labels.begin(), labels.end(), key);
  if (it == labels.end() || labels.size() != q.choices.size()) {
    throw FormatError(r.origin + ": answerKey '" + key + "' is not one of the choice labels");
  }
  q.gold = it - labels.begin();
  return q;
}

// MosaicML's reformatted jsonl: {"query", "choices": [...], "gold"}.
bool is_query_choices_gold(const json& v) {
  return v.contains("query") && v.contains("choices") && v.contains("gold");
}

// arc_easy / arc_challenge: "Question: {{question}}\nAnswer:".
std::vector<Document> load_arc(const fs::path& path) {
  std::vector<Document> docs;
  for (const Record& r : read_records(path)) {
    if (is_query_choices_gold(r.value)) {  // the query already reads "Question: <stem>"
      docs.push_back(multiple_choice(r.origin, text_of(r.value, "query", r.origin) + "\nAnswer:",
                                     strings_of(r.value.at("choices"), "choices", r.origin),
                                     integer_of(r.value, "gold", r.origin)));
      continue;
    }
    KeyedQuestion q = keyed_question(r);
    docs.push_back(multiple_choice(
        r.origin, "Question: " + q.question + "\nAnswer:", std::move(q.choices), q.gold));
  }
  return docs;
}

// openbookqa: the question stem alone.
std::vector<Document> load_openbookqa(const fs::path& path) {
  std::vector<Document> docs;
  if (path.extension() == ".tsv") {  // header row naming question_stem, A..D and answerKey
    const std::vector<std::string> lines = read_lines(path);
    if (lines.empty()) throw FormatError(path.string() + ": empty file");
    auto split = [](const std::string& line) {
      std::vector<std::string> fields(1);
      for (char c : line) {
        if (c == '\t') {
          fields.emplace_back();
        } else {
          fields.back().push_back(c);
        }
      }
      return fields;
    };
    const std::vector<std::string> header = split(lines[0]);
    auto column = [&](std::initializer_list<const char*> names) {
      for (const char* name : names) {
        const auto it = std::find(header.begin(), header.end(), name);
        if (it != header.end()) return static_cast<size_t>(it - header.begin());
      }
      throw FormatError(path.string() + ":1: the header has no column " + *names.begin());
    };
    const size_t stem = column({"question_stem", "Question Stem"});
    const size_t key = column({"answerKey", "Answer Key"});
    const std::vector<size_t> choice = {column({"A"}), column({"B"}), column({"C"}), column({"D"})};
    for (size_t i = 1; i < lines.size(); ++i) {
      if (lines[i].empty()) continue;
      const std::string origin = fmt::format("{}:{}", path.string(), i + 1);
      const std::vector<std::string> f = split(lines[i]);
      if (f.size() != header.size()) throw FormatError(origin + ": wrong number of columns");
      std::vector<std::string> choices;
      for (size_t c : choice) choices.push_back(f[c]);
      const std::string answer =
          f[key].substr(std::min(f[key].find_first_not_of(' '), f[key].size()));
      if (answer.size() != 1 || answer[0] < 'A' || answer[0] > 'D') {
        throw FormatError(origin + ": answer key must be A-D");
      }
      docs.push_back(multiple_choice(origin, f[stem], std::move(choices), answer[0] - 'A'));
    }
    return docs;
  }
  for (const Record& r : read_records(path)) {
    KeyedQuestion q = keyed_question(r);
    docs.push_back(multiple_choice(r.origin, q.question, std::move(q.choices), q.gold));
  }
  return docs;
}

// piqa: "Question: {{goal}}\nAnswer:", choices [sol1, sol2]; the label from the record
// (Hugging Face) or from the release's labels file.
std::vector<Document> load_piqa(const fs::path& path) {
  std::vector<Document> docs;
  for (const auto& [r, gold] : labeled_records(path, "label")) {
    docs.push_back(multiple_choice(
        r.origin, "Question: " + text_of(r.value, "goal", r.origin) + "\nAnswer:",
        {text_of(r.value, "sol1", r.origin), text_of(r.value, "sol2", r.origin)}, gold));
  }
  return docs;
}

// hellaswag: query = preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize()),
// choices = preprocess(ending). llama.cpp's text format (6 lines: context, label, 4 endings)
// holds the context already joined, so ctx_b's first letter stays as the file has it.
std::vector<Document> load_hellaswag(const fs::path& path) {
  std::vector<Document> docs;
  auto preprocessed = [](const std::vector<std::string>& endings) {
    std::vector<std::string> out;
    for (const std::string& e : endings) out.push_back(hellaswag_preprocess(e));
    return out;
  };
  if (path.extension() == ".txt") {
    const std::vector<std::string> lines = read_lines(path);
    size_t n = lines.size();
    while (n > 0 && lines[n - 1].empty()) --n;
    if (n % 6 != 0) {
      throw FormatError(fmt::format("{}: {} lines, not a multiple of 6 (context, label, 4 endings)",
                                    path.string(), n));
    }
    for (size_t i = 0; i < n; i += 6) {
      const std::string origin = fmt::format("{}:{}", path.string(), i + 1);
      int64_t gold = -1;
      if (lines[i + 1].size() == 1 && lines[i + 1][0] >= '0' && lines[i + 1][0] <= '3') {
        gold = lines[i + 1][0] - '0';
      } else {
        throw FormatError(fmt::format("{}:{}: expected the label 0-3, got '{}'", path.string(),
                                      i + 2, lines[i + 1]));
      }
      docs.push_back(multiple_choice(origin, hellaswag_preprocess(lines[i]),
                                     preprocessed({lines.begin() + static_cast<long>(i) + 2,
                                                   lines.begin() + static_cast<long>(i) + 6}),
                                     gold));
    }
    return docs;
  }
  for (const Record& r : read_records(path)) {
    std::string ctx_b = text_of(r.value, "ctx_b", r.origin);
    // Python's str.capitalize(): first character upper, the rest lower (ASCII here).
    for (size_t i = 0; i < ctx_b.size(); ++i) {
      ctx_b[i] = static_cast<char>(i == 0 ? std::toupper(static_cast<unsigned char>(ctx_b[i]))
                                          : std::tolower(static_cast<unsigned char>(ctx_b[i])));
    }
    const std::string query = text_of(r.value, "activity_label", r.origin) + ": " +
                              text_of(r.value, "ctx_a", r.origin) + " " + ctx_b;
    docs.push_back(multiple_choice(
        r.origin, hellaswag_preprocess(query),
        preprocessed(strings_of(r.value.value("endings", json()), "endings", r.origin)),
        integer_of(r.value, "label", r.origin)));
  }
  return docs;
}

// boolq: "{{passage}}\nQuestion: {{question}}?\nAnswer:", choices ["no", "yes"].
std::vector<Document> load_boolq(const fs::path& path) {
  std::vector<Document> docs;
  for (const Record& r : read_records(path)) {
    const json& v = r.value;
    if (is_query_choices_gold(v)) {  // "Passage: <passage>\nQuestion: <question>?"
      const std::string query = text_of(v, "query", r.origin);
      const std::string prefix = "Passage: ";
      if (!query.starts_with(prefix))
        throw FormatError(r.origin + ": query must start with 'Passage: '");
      docs.push_back(multiple_choice(r.origin, query.substr(prefix.size()) + "\nAnswer:",
                                     strings_of(v.at("choices"), "choices", r.origin),
                                     integer_of(v, "gold", r.origin)));
      continue;
    }
    // The original release has "answer": true/false, super_glue "label": 0/1.
    const int64_t gold = integer_of(v, v.contains("answer") ? "answer" : "label", r.origin);
    docs.push_back(multiple_choice(r.origin,
                                   text_of(v, "passage", r.origin) + "\nQuestion: " +
                                       text_of(v, "question", r.origin) + "?\nAnswer:",
                                   {"no", "yes"}, gold));
  }
  return docs;
}

// lambada_openai: context = all words but the last (split on ' '), target = ' ' + last word.
std::vector<Document> load_lambada(const fs::path& path) {
  std::vector<Document> docs;
  for (const Record& r : read_records(path)) {
    const std::string text = text_of(r.value, "text", r.origin);
    const size_t last_space = text.rfind(' ');
    if (last_space == std::string::npos || last_space + 1 == text.size()) {
      throw FormatError(r.origin + ": the text needs a last word after a space");
    }
    Document doc;
    doc.origin = r.origin;
    doc.requests.push_back({text.substr(0, last_space), text.substr(last_space)});
    docs.push_back(std::move(doc));
  }
  return docs;
}

// winogrande: partial evaluation; each option fills the blank of the context and the shared
// remainder is scored: (sentence[:i] + option, " " + sentence[i+1:].strip()).
std::vector<Document> load_winogrande(const fs::path& path) {
  std::vector<Document> docs;
  for (const auto& [r, answer] : labeled_records(path, "answer")) {
    const std::string sentence = text_of(r.value, "sentence", r.origin);
    const size_t blank = sentence.find('_');
    if (blank == std::string::npos) throw FormatError(r.origin + ": the sentence has no '_'");
    const std::string rest = strip(sentence.substr(blank + 1));
    if (answer != 1 && answer != 2) throw FormatError(r.origin + ": the answer must be 1 or 2");
    Document doc;
    doc.origin = r.origin;
    for (const char* option : {"option1", "option2"}) {
      const std::string context = sentence.substr(0, blank) + text_of(r.value, option, r.origin);
      doc.requests.push_back({context, " " + rest});
      doc.choices.push_back(context);
    }
    doc.gold = answer - 1;
    docs.push_back(std::move(doc));
  }
  return docs;
}

// MMLU: the subject's description, then "{{question.strip()}}\nA. ..\nD. {{choices[3]}}\nAnswer:"
// with choices ["A", "B", "C", "D"]. Rows of the release's csv (question, A, B, C, D, answer
// letter) or Hugging Face jsonl ({"question", "choices": [4], "answer": 0-3}).
std::vector<Document> load_mmlu_subject(const fs::path& path, const std::string& subject) {
  std::string topic = subject;
  std::replace(topic.begin(), topic.end(), '_', ' ');
  const std::string description =
      "The following are multiple choice questions (with answers) about " + topic + ".\n\n";
  auto document = [&](const std::string& origin, const std::string& question,
                      const std::vector<std::string>& options, int64_t gold) {
    if (options.size() != 4) throw FormatError(origin + ": MMLU questions have 4 choices");
    const std::string prompt =
        fmt::format("{}{}\nA. {}\nB. {}\nC. {}\nD. {}\nAnswer:", description, strip(question),
                    options[0], options[1], options[2], options[3]);
    return multiple_choice(origin, prompt, {"A", "B", "C", "D"}, gold);
  };
  std::vector<Document> docs;
  if (path.extension() == ".csv") {
    for (const auto& [row, origin] : read_csv(path)) {
      if (row.size() != 6) {
        throw FormatError(fmt::format("{}: expected 6 fields (question, A-D, answer), got {}",
                                      origin, row.size()));
      }
      const std::string& letter = row[5];
      if (letter.size() != 1 || letter[0] < 'A' || letter[0] > 'D') {
        throw FormatError(origin + ": the answer must be A, B, C or D, got '" + letter + "'");
      }
      docs.push_back(document(origin, row[0], {row.begin() + 1, row.begin() + 5}, letter[0] - 'A'));
    }
    return docs;
  }
  for (const Record& r : read_records(path)) {
    docs.push_back(document(r.origin, text_of(r.value, "question", r.origin),
                            strings_of(r.value.value("choices", json()), "choices", r.origin),
                            integer_of(r.value, "answer", r.origin)));
  }
  return docs;
}

// wikitext: the pages of the text as EleutherAI/wikitext_document_level cuts them (lines split
// on "\n"; a page starts at a level-1 heading " = Title = " and is its lines joined by "\n"),
// scored whole after lm-eval's detokenizer; words and bytes are counted on the original page.
std::vector<Document> load_wikitext(const fs::path& path) {
  const std::string text = read_text(path);
  auto is_title = [](std::string line) {
    replace_all(line, "= = =", "===");
    replace_all(line, "= =", "==");
    line = strip(line);
    return line.starts_with("= ") && line.ends_with(" =");
  };
  std::vector<Document> docs;
  auto add_page = [&](const std::string& page, size_t first_line) {
    if (strip(page).empty()) return;
    Document doc;
    doc.origin = fmt::format("{}:{}", path.string(), first_line);
    doc.requests.push_back({"", wikitext_detokenize(page)});
    // len(re.split(r"\s+", page)): the pieces between whitespace runs, empty ends included.
    int64_t words = 1;
    for (size_t i = 0; i < page.size();) {
      if (std::isspace(static_cast<unsigned char>(page[i]))) {
        ++words;
        while (i < page.size() && std::isspace(static_cast<unsigned char>(page[i]))) ++i;
      } else {
        ++i;
      }
    }
    doc.words = words;
    doc.bytes = static_cast<int64_t>(page.size());
    docs.push_back(std::move(doc));
  };
  std::string page;
  size_t line_number = 1, page_line = 1;
  bool first = true;
  for (size_t start = 0; start <= text.size(); ++line_number) {
    const size_t end = std::min(text.find('\n', start), text.size());
    const std::string line = text.substr(start, end - start);
    if (is_title(line)) {
      add_page(page, page_line);
      page.clear();
      first = true;
      page_line = line_number;
    }
    page += (first ? "" : "\n") + line;
    first = false;
    start = end + 1;
  }
  add_page(page, page_line);
  return docs;
}

// --- the task table ---------------------------------------------------------------------------

struct TaskDefinition {
  std::string name;
  std::string folder;  // under the data dir: <dataset>/<split>
  OutputType type;
  std::vector<std::string> metrics;
  std::string template_text;
  double version;
  std::function<std::vector<Document>(const fs::path&)> load;
};

const std::vector<TaskDefinition>& task_definitions() {
  static const std::vector<TaskDefinition> tasks = {
      {"arc_easy",
       "arc_easy/test",
       OutputType::kMultipleChoice,
       {"acc", "acc_norm"},
       "Question: {{question}}\nAnswer:",
       1.0,
       load_arc},
      {"arc_challenge",
       "arc_challenge/test",
       OutputType::kMultipleChoice,
       {"acc", "acc_norm"},
       "Question: {{question}}\nAnswer:",
       1.0,
       load_arc},
      {"hellaswag",
       "hellaswag/validation",
       OutputType::kMultipleChoice,
       {"acc", "acc_norm"},
       "{{query}}",
       1.0,
       load_hellaswag},
      {"piqa",
       "piqa/validation",
       OutputType::kMultipleChoice,
       {"acc", "acc_norm"},
       "Question: {{goal}}\nAnswer:",
       1.0,
       load_piqa},
      {"boolq",
       "boolq/validation",
       OutputType::kMultipleChoice,
       {"acc"},
       "{{passage}}\nQuestion: {{question}}?\nAnswer:",
       2.0,
       load_boolq},
      {"lambada_openai",
       "lambada_openai/test",
       OutputType::kLoglikelihood,
       {"perplexity", "acc"},
       "{{text.split(' ')[:-1]|join(' ')}}",
       1.0,
       load_lambada},
      {"openbookqa",
       "openbookqa/test",
       OutputType::kMultipleChoice,
       {"acc", "acc_norm"},
       "question_stem",
       1.0,
       load_openbookqa},
      {"winogrande",
       "winogrande/validation",
       OutputType::kMultipleChoice,
       {"acc"},
       "partial evaluation: sentence[:blank] + option",
       1.0,
       load_winogrande},
      {"wikitext",
       "wikitext2/test",
       OutputType::kLoglikelihoodRolling,
       {"word_perplexity", "byte_perplexity", "bits_per_byte"},
       "{{page}} (detokenized)",
       2.0,
       load_wikitext},
  };
  return tasks;
}

// lm-eval's lm_eval/tasks/mmlu/_generate_configs.py SUBJECTS: subject -> category.
const std::vector<std::pair<std::string, std::string>>& mmlu_subjects() {
  static const std::vector<std::pair<std::string, std::string>> subjects = {
      {"abstract_algebra", "stem"},
      {"anatomy", "stem"},
      {"astronomy", "stem"},
      {"business_ethics", "other"},
      {"clinical_knowledge", "other"},
      {"college_biology", "stem"},
      {"college_chemistry", "stem"},
      {"college_computer_science", "stem"},
      {"college_mathematics", "stem"},
      {"college_medicine", "other"},
      {"college_physics", "stem"},
      {"computer_security", "stem"},
      {"conceptual_physics", "stem"},
      {"econometrics", "social_sciences"},
      {"electrical_engineering", "stem"},
      {"elementary_mathematics", "stem"},
      {"formal_logic", "humanities"},
      {"global_facts", "other"},
      {"high_school_biology", "stem"},
      {"high_school_chemistry", "stem"},
      {"high_school_computer_science", "stem"},
      {"high_school_european_history", "humanities"},
      {"high_school_geography", "social_sciences"},
      {"high_school_government_and_politics", "social_sciences"},
      {"high_school_macroeconomics", "social_sciences"},
      {"high_school_mathematics", "stem"},
      {"high_school_microeconomics", "social_sciences"},
      {"high_school_physics", "stem"},
      {"high_school_psychology", "social_sciences"},
      {"high_school_statistics", "stem"},
      {"high_school_us_history", "humanities"},
      {"high_school_world_history", "humanities"},
      {"human_aging", "other"},
      {"human_sexuality", "social_sciences"},
      {"international_law", "humanities"},
      {"jurisprudence", "humanities"},
      {"logical_fallacies", "humanities"},
      {"machine_learning", "stem"},
      {"management", "other"},
      {"marketing", "other"},
      {"medical_genetics", "other"},
      {"miscellaneous", "other"},
      {"moral_disputes", "humanities"},
      {"moral_scenarios", "humanities"},
      {"nutrition", "other"},
      {"philosophy", "humanities"},
      {"prehistory", "humanities"},
      {"professional_accounting", "other"},
      {"professional_law", "humanities"},
      {"professional_medicine", "other"},
      {"professional_psychology", "social_sciences"},
      {"public_relations", "social_sciences"},
      {"security_studies", "social_sciences"},
      {"sociology", "social_sciences"},
      {"us_foreign_policy", "social_sciences"},
      {"virology", "other"},
      {"world_religions", "humanities"},
  };
  return subjects;
}

// The one data file in a task's folder (labels files and compressed copies aside).
fs::path find_data_file(const fs::path& folder, const std::string& task) {
  const std::string hint = fmt::format("; pass --data-dir or --task-file {}=FILE", task);
  if (!fs::is_directory(folder)) {
    throw FormatError(
        fmt::format("no data for task {}: {} is not a folder{}", task, folder.string(), hint));
  }
  std::vector<fs::path> candidates;
  for (const auto& entry : fs::directory_iterator(folder)) {
    const fs::path& p = entry.path();
    const std::string ext = p.extension().string();
    if (!entry.is_regular_file() || p.filename().string().find("labels") != std::string::npos ||
        ext == ".bz2" || ext == ".gz" || ext == ".md") {
      continue;
    }
    candidates.push_back(p);
  }
  if (candidates.size() != 1) {
    throw FormatError(fmt::format("task {}: expected one data file in {}, found {}{}", task,
                                  folder.string(), candidates.size(), hint));
  }
  return candidates[0];
}

Task make_task(const TaskDefinition& def, const fs::path& source) {
  Task task;
  task.name = def.name;
  task.type = def.type;
  task.metrics = def.metrics;
  task.template_text = def.template_text;
  task.version = def.version;
  task.source = source;
  task.docs = def.load(source);
  if (task.docs.empty()) throw FormatError(source.string() + ": no documents for " + def.name);
  task.docs_in_source = static_cast<int64_t>(task.docs.size());
  return task;
}

}  // namespace

const std::vector<std::string>& mmlu_groups() {
  static const std::vector<std::string> groups = {"mmlu_humanities", "mmlu_other",
                                                  "mmlu_social_sciences", "mmlu_stem"};
  return groups;
}

int64_t mmlu_group_size(const std::string& group) {
  const auto& subjects = mmlu_subjects();
  return std::count_if(subjects.begin(), subjects.end(),
                       [&](const auto& s) { return "mmlu_" + s.second == group; });
}

std::vector<std::string> known_task_names() {
  std::vector<std::string> names;
  for (const TaskDefinition& def : task_definitions()) names.push_back(def.name);
  names.push_back("mmlu");
  for (const auto& [subject, category] : mmlu_subjects()) names.push_back("mmlu_" + subject);
  return names;
}

std::vector<Task> load_tasks(const std::vector<std::string>& names, const TaskOptions& options) {
  std::vector<Task> tasks;
  auto file_for = [&](const std::string& name, const fs::path& folder) {
    const auto it = options.task_files.find(name);
    return it != options.task_files.end() ? it->second : find_data_file(folder, name);
  };
  auto load_subject = [&](const std::string& subject, const std::string& category) {
    const std::string name = "mmlu_" + subject;
    fs::path source;
    if (const auto it = options.task_files.find(name); it != options.task_files.end()) {
      source = it->second;
    } else {  // the release's layout: <dir>/<subject>_test.csv; --task-file mmlu=DIR moves <dir>
      const auto dir = options.task_files.find("mmlu");
      source = (dir != options.task_files.end() ? dir->second : options.data_dir / "mmlu/test") /
               (subject + "_test.csv");
    }
    if (!fs::exists(source)) {
      throw FormatError(
          fmt::format("no data for task {}: {} does not exist; pass --data-dir or "
                      "--task-file {}=FILE",
                      name, source.string(), name));
    }
    const TaskDefinition def{name,
                             "",
                             OutputType::kMultipleChoice,
                             {"acc"},
                             "{{question.strip()}}\\nA. {{choices[0]}}\\nB. {{choices[1]}}\\nC. "
                             "{{choices[2]}}\\nD. {{choices[3]}}\\nAnswer:",
                             1.0,
                             [&](const fs::path& p) { return load_mmlu_subject(p, subject); }};
    tasks.push_back(make_task(def, source));
    tasks.back().group = "mmlu_" + category;
  };
  const std::vector<std::string> known = known_task_names();
  for (const std::string& name : names) {  // every name checked before any file is read
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      std::string listed;
      for (const TaskDefinition& d : task_definitions()) listed += d.name + ", ";
      throw std::invalid_argument(
          fmt::format("unknown task '{}'; known tasks: {}mmlu and mmlu_<subject>", name, listed));
    }
  }
  for (const std::string& name : names) {
    if (name == "mmlu") {
      for (const auto& [subject, category] : mmlu_subjects()) load_subject(subject, category);
      continue;
    }
    const auto& subjects = mmlu_subjects();
    const auto subject = std::find_if(subjects.begin(), subjects.end(),
                                      [&](const auto& s) { return "mmlu_" + s.first == name; });
    if (subject != subjects.end()) {
      load_subject(subject->first, subject->second);
      continue;
    }
    const auto& defs = task_definitions();
    const auto def = std::find_if(defs.begin(), defs.end(),
                                  [&](const TaskDefinition& d) { return d.name == name; });
    tasks.push_back(make_task(*def, file_for(name, options.data_dir / def->folder)));
  }
  if (options.limit >= 0) {
    for (Task& task : tasks) {
      if (static_cast<int64_t>(task.docs.size()) > options.limit) task.docs.resize(options.limit);
    }
  }
  return tasks;
}

std::string hellaswag_preprocess(std::string text) {
  text = strip(text);
  replace_all(text, " [title]", ". ");
  text = drop_bracketed(text);
  replace_all(text, "  ", " ");
  return text;
}

std::string wikitext_detokenize(std::string s) {
  replace_all(s, "s '", "s'");  // contractions
  // re.sub(r"/' [0-9]/", r"/'[0-9]/", s): the pattern's text, literally, as the replacement.
  for (size_t at = s.find("/' "); at != std::string::npos; at = s.find("/' ", at + 1)) {
    if (at + 4 < s.size() && std::isdigit(static_cast<unsigned char>(s[at + 3])) &&
        s[at + 4] == '/') {
      s.replace(at, 5, "/'[0-9]/");
    }
  }
  replace_all(s, " @-@ ", "-");  // number separators
  replace_all(s, " @,@ ", ",");
  replace_all(s, " @.@ ", ".");
  for (const char* p : {" : ", " ; ", " . ", " ! ", " ? ", " , "}) {  // punctuation
    replace_all(s, p, std::string(p + 1));
  }
  for (const auto& [open, close] : {std::pair{'(', ')'}, std::pair{'[', ']'}, std::pair{'{', '}'},
                                    std::pair{'"', '"'}, std::pair{'\'', '\''}}) {
    s = tighten_brackets(s, open, close);  // double brackets
  }
  replace_all(s, "= = = =", "====");  // miscellaneous
  replace_all(s, "= = =", "===");
  replace_all(s, "= =", "==");
  replace_all(s, " \xC2\xB0 ", "\xC2\xB0");  // chr(176), the degree sign, in UTF-8
  replace_all(s, " \n", "\n");
  replace_all(s, "\n ", "\n");
  replace_all(s, " N ", " 1 ");
  replace_all(s, " 's", "'s");
  return s;
}

}  // namespace ecomla
