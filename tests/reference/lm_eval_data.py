# Independent reference for `ecomla eval`, step 1 of 3: converts the first 40 documents of each
# task in ../shared/data to the Hugging Face layouts that lm-evaluation-harness's own task YAML
# expects (written to /tmp/lmcheck/data). Step 2: lm_eval_reference.py. Step 3:
# make_lm_eval_golden.py. Run with lm_eval 0.4.13, transformers 5.24.0, torch 2.15.0, gguf,
# accelerate in a virtual environment (not a dependency of ecomla).
import json, csv, re
N=40
D="/work/shared/data"; O="/tmp/lmcheck/data"
def w(name, rows):
    with open(f"{O}/{name}.jsonl","w") as f:
        for r in rows: f.write(json.dumps(r)+"\n")
    print(name, len(rows))
def first(path, n=N):
    out=[]
    with open(path) as f:
        for line in f:
            out.append(json.loads(line))
            if len(out)==n: break
    return out
# ARC -> allenai/ai2_arc layout
for t in ["arc_easy","arc_challenge"]:
    rows=[]
    for i,d in enumerate(first(f"{D}/{t}/test/{t}.jsonl")):
        q=d["query"]; assert q.startswith("Question: ")
        labels=[chr(65+k) for k in range(len(d["choices"]))]
        rows.append({"id":f"{t}-{i}","question":q[len("Question: "):],"choices":{"text":d["choices"],"label":labels},"answerKey":labels[d["gold"]]})
    w(t,rows)
# PIQA
labs=[int(x) for x in open(f"{D}/piqa/validation/valid-labels.lst").read().split()]
w("piqa",[dict(d,label=labs[i]) for i,d in enumerate(first(f"{D}/piqa/validation/valid.jsonl"))])
# BoolQ -> super_glue layout
rows=[]
for i,d in enumerate(first(f"{D}/boolq/validation/boolq.jsonl")):
    q=d["query"]; k=q.rfind("\nQuestion: ")
    p=q[:k]; assert p.startswith("Passage: "); p=p[len("Passage: "):]
    qq=q[k+len("\nQuestion: "):]; assert qq.endswith("?"), qq; qq=qq[:-1]
    assert d["choices"]==["no","yes"]
    rows.append({"passage":p,"question":qq,"label":d["gold"],"idx":i})
w("boolq",rows)
# HellaSwag: raw llama.cpp fields; process_docs (lm-eval preprocess) applied in the task config
rows=[]
L=open(f"{D}/hellaswag/validation/hellaswag_val_full.txt").read().split("\n")
for i in range(N):
    b=L[6*i:6*i+6]
    rows.append({"context_line":b[0],"label":str(int(b[1])),"endings":b[2:6]})
w("hellaswag",rows)
# LAMBADA
w("lambada_openai",first(f"{D}/lambada_openai/test/lambada_test.jsonl"))
# MMLU -> cais/mmlu layout
for s in ["anatomy","high_school_biology"]:
    rows=[]
    with open(f"{D}/mmlu/test/{s}_test.csv", newline="") as f:
        for r in csv.reader(f):
            rows.append({"question":r[0],"subject":s,"choices":r[1:5],"answer":"ABCD".index(r[5].strip())})
            if len(rows)==N: break
    w("mmlu_"+s,rows)
# WikiText: EleutherAI/wikitext_document_level page splitting, applied to wiki.test.tokens
pages=[]; ret=[]
data=open(f"{D}/wikitext2/test/wiki.test.tokens",encoding="utf-8").read().split("\n")
for line in data:
    rline=line.replace("= = =","===").replace("= =","==").strip()
    if rline.startswith("= ") and rline.strip().endswith(" ="):
        page="\n".join(ret)
        if page.strip(): pages.append(page)
        ret=[]
    ret.append(line)
pages.append("\n".join(ret))
print("wikitext total pages", len(pages))
w("wikitext",[{"page":p} for p in pages[:3]])
