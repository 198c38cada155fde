# Independent reference for `ecomla eval`, step 3 of 3: turns lm_eval_reference.py's requests
# into tests/reference/lm_eval_smollm2.jsonl, which the model test EvalReal.MatchesLmEval reads.
# The prompts are kept as FNV-1a 64-bit hashes of context + "\x1f" + continuation (UTF-8), so no
# data set text is copied into the repository; only the first WikiText page is kept (the test
# scores one page to stay fast).
import json
import sys


def fnv1a64(text):
    h = 0xcbf29ce484222325
    for byte in text.encode("utf-8"):
        h = ((h ^ byte) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


source = sys.argv[1] if len(sys.argv) > 1 else "/tmp/lmcheck/lm_eval_requests.jsonl"
target = sys.argv[2] if len(sys.argv) > 2 else "tests/reference/lm_eval_smollm2.jsonl"
with open(source) as f, open(target, "w") as out:
    for line in f:
        r = json.loads(line)
        if r["task"] == "wikitext" and r["doc_index"] > 0:
            continue
        row = {"task": r["task"], "doc": r["doc_index"], "request": r["request_index"],
               "hash": fnv1a64(r["context"] + "\x1f" + r["continuation"]),
               "loglikelihood": r["loglikelihood"], "greedy": r["is_greedy"]}
        out.write(json.dumps(row) + "\n")
