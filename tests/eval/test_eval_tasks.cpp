// Every data format each task reads, on tiny hand-written fixtures: the exact prompts and
// continuations lm-eval's templates give (worked out by hand from the task YAML and utils), the
// gold index, and clear errors naming the file and line for bad input.
#include <gtest/gtest.h>

#include <fstream>

#include "ecomla/error.h"
#include "ecomla/eval_tasks.h"
#include "support/tiny_model.h"

namespace ecomla {
namespace {

namespace fs = std::filesystem;

class TaskFormats : public testing::Test {
protected:
  // Writes `text` to <data dir>/<relative> and returns its path.
  fs::path put(const std::string& relative, const std::string& text) {
    const fs::path path = dir_.path() / relative;
    fs::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }
  Task load(const std::string& name, int64_t limit = -1) {
    TaskOptions options;
    options.data_dir = dir_.path();
    options.limit = limit;
    std::vector<Task> tasks = load_tasks({name}, options);
    EXPECT_EQ(tasks.size(), 1u);
    return tasks.at(0);
  }
  Task load_file(const std::string& name, const fs::path& file) {
    TaskOptions options;
    options.data_dir = dir_.path() / "nowhere";
    options.task_files[name] = file;
    return load_tasks({name}, options).at(0);
  }
  // The requests of a multiple-choice document: one context, " " + each choice.
  static void expect_choices(const Document& doc, const std::string& context,
                             const std::vector<std::string>& choices, int64_t gold) {
    ASSERT_EQ(doc.requests.size(), choices.size()) << doc.origin;
    for (size_t i = 0; i < choices.size(); ++i) {
      EXPECT_EQ(doc.requests[i].context, context) << doc.origin;
      EXPECT_EQ(doc.requests[i].continuation, " " + choices[i]) << doc.origin;
    }
    EXPECT_EQ(doc.choices, choices);
    EXPECT_EQ(doc.gold, gold) << doc.origin;
  }

  test::TempDir dir_;
};

TEST_F(TaskFormats, ArcInItsThreeLayouts) {
  // AI2's release: numeric keys with three choices, letter keys with five.
  put("arc_easy/test/ARC-Easy-Test.jsonl",
      R"({"id":"q1","question":{"stem":"Which is a gas?","choices":[{"text":"ice","label":"1"},)"
      R"({"text":"steam","label":"2"},{"text":"rock","label":"3"}]},"answerKey":"2"})"
      "\n"
      R"({"id":"q2","question":{"stem":"Pick E.","choices":[{"text":"a","label":"A"},)"
      R"({"text":"b","label":"B"},{"text":"c","label":"C"},{"text":"d","label":"D"},)"
      R"({"text":"e","label":"E"}]},"answerKey":"E"})"
      "\n");
  const Task original = load("arc_easy");
  ASSERT_EQ(original.docs.size(), 2u);
  expect_choices(original.docs[0], "Question: Which is a gas?\nAnswer:", {"ice", "steam", "rock"},
                 1);
  expect_choices(original.docs[1], "Question: Pick E.\nAnswer:", {"a", "b", "c", "d", "e"}, 4);
  EXPECT_EQ(original.metrics, (std::vector<std::string>{"acc", "acc_norm"}));

  // Hugging Face's layout and MosaicML's reformatted one.
  const Task hf =
      load_file("arc_challenge",
                put("hf.jsonl", R"({"id":"x","question":"Why?","choices":{"text":["because","no"],)"
                                R"("label":["A","B"]},"answerKey":"A"})"));
  expect_choices(hf.docs[0], "Question: Why?\nAnswer:", {"because", "no"}, 0);
  const Task mosaic = load_file(
      "arc_challenge",
      put("mosaic.jsonl", R"({"query": "Question: Why?", "choices": ["a", "b"], "gold": 1})"));
  expect_choices(mosaic.docs[0], "Question: Why?\nAnswer:", {"a", "b"}, 1);
}

TEST_F(TaskFormats, PiqaWithLabelsFileOrLabelField) {
  put("piqa/validation/valid.jsonl",
      R"({"goal": "Open a jar", "sol1": "twist the lid", "sol2": "shout at it"})"
      "\n"
      R"({"goal": "Dry hair", "sol1": "use water", "sol2": "use a towel"})"
      "\n");
  put("piqa/validation/valid-labels.lst", "0\n1\n");
  const Task piqa = load("piqa");
  ASSERT_EQ(piqa.docs.size(), 2u);
  expect_choices(piqa.docs[0], "Question: Open a jar\nAnswer:", {"twist the lid", "shout at it"},
                 0);
  expect_choices(piqa.docs[1], "Question: Dry hair\nAnswer:", {"use water", "use a towel"}, 1);
  const Task hf =
      load_file("piqa", put("hf/piqa.jsonl", R"({"goal":"g","sol1":"a","sol2":"b","label":1})"));
  EXPECT_EQ(hf.docs[0].gold, 1);
}

TEST_F(TaskFormats, HellaswagJsonlAndLlamaCppText) {
  // lm-eval: preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize()); " [title]"
  // becomes ". ", other [markers] go, double spaces collapse once.
  put("hellaswag/validation/hellaswag_val.jsonl",
      R"({"activity_label": "Baking cookies", "ctx_a": "A woman pours flour [title] in a bowl.",)"
      R"( "ctx_b": "she", "endings": [" adds eggs.  then stirs", "[step] Mix well.",)"
      R"( "bakes   them [substeps] now", "leaves."], "label": 2})"
      "\n");
  const Task jsonl = load("hellaswag");
  expect_choices(jsonl.docs[0], "Baking cookies: A woman pours flour. in a bowl. She",
                 {"adds eggs. then stirs", " Mix well.", "bakes  them now", "leaves."}, 2);
  const Task text = load_file("hellaswag", put("hs.txt",
                                               "Roofing: A man is on a roof. he\n"
                                               "3\n"
                                               "falls.\n"
                                               "sings.\n"
                                               "flies [title] away.\n"
                                               "removes shingles.\n"));
  // The text format joins ctx_a and ctx_b already, so "he" keeps its case.
  expect_choices(text.docs[0], "Roofing: A man is on a roof. he",
                 {"falls.", "sings.", "flies. away.", "removes shingles."}, 3);
}

TEST(Preprocessing, RegularExpressionsWrittenOut) {
  // re.sub("\\[.*?\\]", "", s) takes the shortest bracket from the first "[" and leaves an
  // unclosed one; values checked with Python.
  EXPECT_EQ(hellaswag_preprocess("x [a [b] c] y [open"), "x c] y [open");
  EXPECT_EQ(wikitext_detokenize("a /' 5/ b ( c )"), "a /'[0-9]/ b (c)");
}

TEST_F(TaskFormats, BoolqOriginalSuperGlueAndReformatted) {
  put("boolq/validation/dev.jsonl",
      R"({"question": "is the sky blue", "title": "Sky", "answer": true, "passage": "The sky is blue."})"
      "\n");
  const Task original = load("boolq");
  expect_choices(original.docs[0],
                 "The sky is blue.\nQuestion: is the sky blue?\nAnswer:", {"no", "yes"}, 1);
  EXPECT_EQ(original.metrics, (std::vector<std::string>{"acc"}));
  const Task glue = load_file(
      "boolq", put("glue.jsonl", R"({"question": "q", "passage": "p", "idx": 0, "label": 0})"));
  expect_choices(glue.docs[0], "p\nQuestion: q?\nAnswer:", {"no", "yes"}, 0);
  const Task mosaic = load_file(
      "boolq",
      put("mosaic.jsonl",
          R"({"query": "Passage: p\nQuestion: q?", "choices": ["no", "yes"], "gold": 1})"));
  expect_choices(mosaic.docs[0], "p\nQuestion: q?\nAnswer:", {"no", "yes"}, 1);
}

TEST_F(TaskFormats, LambadaSplitsOffTheLastWord) {
  put("lambada_openai/test/lambada_test.jsonl",
      R"({"text": "He opened the door and saw his old friend Tom"})"
      "\n");
  const Task lambada = load("lambada_openai");
  ASSERT_EQ(lambada.docs[0].requests.size(), 1u);
  EXPECT_EQ(lambada.docs[0].requests[0].context, "He opened the door and saw his old friend");
  EXPECT_EQ(lambada.docs[0].requests[0].continuation, " Tom");
  EXPECT_EQ(lambada.type, OutputType::kLoglikelihood);
}

TEST_F(TaskFormats, MmluCsvWithQuotingAndJsonl) {
  put("mmlu/test/anatomy_test.csv",
      "\"What is \"\"x\"\", really?\",1,\"2, or 3\",3,4,B\n"
      "\"Two\nlines \",a,b,c,d,D\n");
  const Task mmlu = load("mmlu_anatomy");
  ASSERT_EQ(mmlu.docs.size(), 2u);
  const std::string description =
      "The following are multiple choice questions (with answers) about anatomy.\n\n";
  expect_choices(mmlu.docs[0],
                 description + "What is \"x\", really?\nA. 1\nB. 2, or 3\nC. 3\nD. 4\nAnswer:",
                 {"A", "B", "C", "D"}, 1);
  expect_choices(mmlu.docs[1],
                 description + "Two\nlines\nA. a\nB. b\nC. c\nD. d\nAnswer:", {"A", "B", "C", "D"},
                 3);
  EXPECT_EQ(mmlu.group, "mmlu_stem");
  const Task hf = load_file(
      "mmlu_high_school_us_history",
      put("us.jsonl",
          R"({"question": " Q ", "subject": "x", "choices": ["a","b","c","d"], "answer": 2})"));
  expect_choices(hf.docs[0],
                 "The following are multiple choice questions (with answers) about high school "
                 "us history.\n\nQ\nA. a\nB. b\nC. c\nD. d\nAnswer:",
                 {"A", "B", "C", "D"}, 2);
  EXPECT_EQ(hf.group, "mmlu_humanities");
}

TEST_F(TaskFormats, OpenbookqaJsonlHuggingFaceAndTsv) {
  put("openbookqa/test/test.jsonl",
      R"({"id":"7","question":{"stem":"The sun is","choices":[{"text":"cold","label":"A"},)"
      R"({"text":"hot","label":"B"},{"text":"wet","label":"C"},{"text":"blue","label":"D"}]},)"
      R"("answerKey":"B"})"
      "\n");
  expect_choices(load("openbookqa").docs[0], "The sun is", {"cold", "hot", "wet", "blue"}, 1);
  const Task hf = load_file(
      "openbookqa", put("obqa.jsonl", R"({"id":"7","question_stem":"Ice is","choices":{"text":)"
                                      R"(["hot","cold"],"label":["A","B"]},"answerKey":" B"})"));
  expect_choices(hf.docs[0], "Ice is", {"hot", "cold"}, 1);
  const Task tsv = load_file("openbookqa", put("obqa.tsv",
                                               "id\tquestion_stem\tA\tB\tC\tD\tanswerKey\n"
                                               "1\tRain is\tdry\twet\tred\tloud\tB\n"));
  expect_choices(tsv.docs[0], "Rain is", {"dry", "wet", "red", "loud"}, 1);
}

TEST_F(TaskFormats, WinograndePartialEvaluation) {
  // Each option fills the blank in the context; the rest of the sentence is scored.
  put("winogrande/validation/dev.jsonl",
      R"({"sentence": "Sarah lent Maria a book because _ had finished it.", "option1": "Sarah",)"
      R"( "option2": "Maria"})"
      "\n");
  put("winogrande/validation/dev-labels.lst", "1\n");
  const Task wino = load("winogrande");
  const Document& doc = wino.docs[0];
  ASSERT_EQ(doc.requests.size(), 2u);
  EXPECT_EQ(doc.requests[0].context, "Sarah lent Maria a book because Sarah");
  EXPECT_EQ(doc.requests[1].context, "Sarah lent Maria a book because Maria");
  EXPECT_EQ(doc.requests[0].continuation, " had finished it.");
  EXPECT_EQ(doc.requests[1].continuation, " had finished it.");
  EXPECT_EQ(doc.gold, 0);
  const Task hf =
      load_file("winogrande",
                put("w.jsonl", R"({"sentence":"A _ B","option1":"x","option2":"y","answer":"2"})"));
  EXPECT_EQ(hf.docs[0].gold, 1);
  EXPECT_EQ(hf.docs[0].requests[1].context, "A y");
  EXPECT_EQ(hf.docs[0].requests[1].continuation, " B");
}

TEST_F(TaskFormats, WikitextPagesDetokenizedAndCounted) {
  const std::string alpha =
      " = Alpha = \n \n The cat 's toy ( a ball ) cost 1 @,@ 000 dollars , said \" Bob \" . \n"
      " = = History = = \n It was 5 @.@ 5 \xC2\xB0 C . \n";
  put("wikitext2/test/wiki.test.tokens", " \n" + alpha + " = Beta = \n Last N words \n");
  const Task wiki = load("wikitext");
  ASSERT_EQ(wiki.docs.size(), 2u);
  // Expected values from lm-eval's wikitext_detokenizer and process_results, run in Python.
  EXPECT_EQ(wiki.docs[0].requests[0].context, "");
  EXPECT_EQ(wiki.docs[0].requests[0].continuation,
            " = Alpha =\n\nThe cat's toy (a ball) cost 1,000 dollars, said \"Bob\".\n"
            "== History ==\nIt was 5.5\xC2\xB0"
            "C. ");  // a page is its lines joined by "\n": the one before "= Beta =" ends it
  EXPECT_EQ(wiki.docs[0].words, 37);
  EXPECT_EQ(wiki.docs[0].bytes, 123);
  EXPECT_EQ(wiki.docs[1].requests[0].continuation, " = Beta =\nLast 1 words\n");
  EXPECT_EQ(wiki.docs[1].words, 8);
  EXPECT_EQ(wiki.docs[1].bytes, 26);
}

TEST_F(TaskFormats, LimitKeepsTheFirstDocuments) {
  put("lambada_openai/test/l.jsonl",
      "{\"text\": \"a b\"}\n{\"text\": \"c d\"}\n{\"text\": \"e f\"}\n");
  const Task two = load("lambada_openai", 2);
  ASSERT_EQ(two.docs.size(), 2u);
  EXPECT_EQ(two.docs[1].requests[0].context, "c");
  EXPECT_EQ(two.docs_in_source, 3);
}

TEST_F(TaskFormats, BadInputNamesTheFileAndLine) {
  TaskOptions options;
  options.data_dir = dir_.path();
  try {
    load_tasks({"arc_easy", "no_such_task"}, options);
    ADD_FAILURE() << "an unknown task was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("unknown task 'no_such_task'"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("hellaswag"), std::string::npos);  // lists known ones
  } catch (const FormatError&) {
    // arc_easy's folder is missing too; the unknown name must still be reported first.
    ADD_FAILURE() << "expected the unknown task to be reported";
  }
  test::expect_format_error([&] { load("piqa"); }, {"piqa", "--task-file"});
  const fs::path broken = put("broken.jsonl", "{\"text\": \"a b\"}\n{\"text\": \"c d\"\n");
  test::expect_format_error([&] { load_file("lambada_openai", broken); }, {"broken.jsonl:2"});
  const fs::path range =
      put("range.jsonl", R"({"query": "Question: q", "choices": ["a", "b"], "gold": 2})");
  test::expect_format_error([&] { load_file("arc_easy", range); },
                            {"range.jsonl:1", "outside the 2 choices"});
  const fs::path key =
      put("key.jsonl",
          R"({"question":{"stem":"s","choices":[{"text":"a","label":"A"}]},"answerKey":"C"})");
  test::expect_format_error([&] { load_file("arc_easy", key); }, {"key.jsonl:1", "answerKey 'C'"});
  const fs::path csv = put("mmlu/test/virology_test.csv", "q,a,b,c,d,A\nq,a,b,c,A\n");
  test::expect_format_error([&] { load("mmlu_virology"); }, {"virology_test.csv:2", "6 fields"});
  const fs::path text = put("short.txt", "ctx\n1\na\nb\n");
  test::expect_format_error([&] { load_file("hellaswag", text); }, {"short.txt", "multiple of 6"});
  put("piqa/validation/valid.jsonl", R"({"goal":"g","sol1":"a","sol2":"b"})");
  put("piqa/validation/valid-labels.lst", "0\n1\n");
  test::expect_format_error([&] { load("piqa"); }, {"valid.jsonl", "1 records but 2 labels"});
}

}  // namespace
}  // namespace ecomla
