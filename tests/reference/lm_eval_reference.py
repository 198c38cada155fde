# Independent reference for `ecomla eval`, step 2 of 3: runs the real lm-evaluation-harness
# (HFLM over transformers, which dequantises the GGUF to fp32) with its own task YAML pointed at
# the files lm_eval_data.py wrote, 0-shot, 40 documents per task (3 WikiText pages), and writes
# every request with its log-likelihood to /tmp/lmcheck/lm_eval_requests.jsonl.
import os, sys, json, time
os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
import torch; torch.set_num_threads(1); torch.set_num_interop_threads(1)
import numpy as np
import transformers, lm_eval
from transformers import AutoModelForCausalLM, AutoTokenizer
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
from lm_eval.tasks._yaml_loader import load_yaml
from lm_eval import simple_evaluate
from pathlib import Path

ONLY = sys.argv[1:]  # optional subset of task names
TD = Path(lm_eval.__file__).parent / "tasks"
DATA = "/tmp/lmcheck/data"
N = 40

d="/work/main/models"; f="SmolLM2-135M-Instruct.Q4_1.gguf"
tok=AutoTokenizer.from_pretrained(d, gguf_file=f)
model=AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
model.eval()
lm = HFLM(pretrained=model, tokenizer=tok, batch_size=1)
info = {
  "versions": {"lm_eval": lm_eval.__version__ if hasattr(lm_eval,"__version__") else None, "transformers": transformers.__version__, "torch": torch.__version__},
  "prefix_token_id": lm.prefix_token_id, "prefix_token": tok.convert_ids_to_tokens(lm.prefix_token_id),
  "max_length": lm.max_length, "eot_token_id": lm.eot_token_id, "add_bos_token": lm.add_bos_token, "backend": lm.backend,
  "logits_cache": getattr(lm, "logits_cache", None),
  "bos": [tok.bos_token, tok.bos_token_id], "eos": [tok.eos_token, tok.eos_token_id], "pad": [tok.pad_token, tok.pad_token_id], "unk": [tok.unk_token, tok.unk_token_id],
  "tok_encode('Hello world')": lm.tok_encode("Hello world"),
  "tokenizer(...).input_ids": tok("Hello world").input_ids,
  "model_dtype": str(next(model.parameters()).dtype),
}
print(json.dumps(info, indent=1), flush=True)

def cfg_from(yaml_rel, overrides):
    cfg = dict(load_yaml(TD / yaml_rel, resolve_func=True))
    for k in ("tag","group"): cfg.pop(k, None)
    cfg.update(overrides)
    return cfg

def local(name, split):
    return {"dataset_path": "json", "dataset_name": None,
            "dataset_kwargs": {"data_files": {split: f"{DATA}/{name}.jsonl"}},
            "training_split": None, "validation_split": None, "test_split": None, "fewshot_split": None,
            ("test_split" if split=="test" else "validation_split"): split}

from lm_eval.tasks.hellaswag.utils import preprocess as hs_preprocess
def hs_process_docs(dataset):
    def _p(doc):
        return {"query": hs_preprocess(doc["context_line"]),
                "choices": [hs_preprocess(e) for e in doc["endings"]],
                "gold": int(doc["label"])}
    return dataset.map(_p)

tasks = {
 "arc_easy": cfg_from("arc/arc_easy.yaml", local("arc_easy","test")),
 "arc_challenge": cfg_from("arc/arc_challenge.yaml", local("arc_challenge","test")),
 "piqa": cfg_from("piqa/piqa.yaml", local("piqa","validation")),
 "boolq": cfg_from("super_glue/boolq/default.yaml", local("boolq","validation")),
 "hellaswag": cfg_from("hellaswag/hellaswag.yaml", {**local("hellaswag","validation"), "process_docs": hs_process_docs}),
 "lambada_openai": cfg_from("lambada/lambada_openai.yaml", local("lambada_openai","test")),
 "mmlu_anatomy": cfg_from("mmlu/default/mmlu_anatomy.yaml", {**local("mmlu_anatomy","test"), "fewshot_config": None}),
 "mmlu_high_school_biology": cfg_from("mmlu/default/mmlu_high_school_biology.yaml", {**local("mmlu_high_school_biology","test"), "fewshot_config": None}),
 "wikitext": cfg_from("wikitext/wikitext.yaml", local("wikitext","test")),
}
if ONLY: tasks = {k:v for k,v in tasks.items() if k in ONLY}
for k,v in tasks.items(): assert v["task"]==k, (k, v["task"])

# first arc_easy pair via lm._encode_pair
pair = {}
t0=time.time()
res = simple_evaluate(model=lm, tasks=list(tasks.values()), num_fewshot=0, limit=N, log_samples=True,
                      bootstrap_iters=0, random_seed=0, numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0,
                      task_manager=TaskManager())
print("eval seconds", time.time()-t0, flush=True)

def args_of(a):
    if isinstance(a, dict):  # {"gen_args_0": {"arg_0":..., "arg_1":...}}
        return [(v["arg_0"], v.get("arg_1")) for v in a.values()]
    return [tuple(x) for x in a]

suffix = ("_"+"_".join(ONLY)) if ONLY else ""
rows=[]; scores={}
for tname in tasks:
    samples = sorted(res["samples"][tname], key=lambda s: s["doc_id"])
    assert len(samples) == (3 if tname=="wikitext" else N), (tname, len(samples))
    accn_mine=[]; acc_mine=[]
    for s in samples:
        args = args_of(s["arguments"])
        resps = s["resps"]
        if tname=="wikitext":
            (ctxcont,) = args
            ll = resps[0][0]; ll = ll[0] if isinstance(ll,(list,tuple)) else ll
            wp = s["word_perplexity"]; bp = s["byte_perplexity"]
            rows.append({"task":tname,"doc_index":s["doc_id"],"request_index":0,"context":"","continuation":ctxcont[0],
                         "loglikelihood":float(ll),"is_greedy":None,"words":int(wp[1]) if isinstance(wp,(list,tuple)) else None,
                         "bytes":int(bp[1]) if isinstance(bp,(list,tuple)) else None,
                         "num_tokens": len(lm.tok_encode(ctxcont[0]))})
            continue
        lls=[]
        for j,((c,cont),r) in enumerate(zip(args,resps)):
            ll,g = r[0]
            lls.append(float(ll))
            rows.append({"task":tname,"doc_index":s["doc_id"],"request_index":j,"context":c,"continuation":cont,
                         "loglikelihood":float(ll),"is_greedy":bool(g),"target":s["target"] if j==0 else None})
        if len(args)>1:
            gold = int(s["target"]) if not isinstance(s["target"], list) else s["target"]
            acc_mine.append(int(np.argmax(lls))==gold)
            accn_mine.append(int(np.argmax([l/len(cont) for l,(c,cont) in zip(lls,args)]))==gold)
    m = {k:v for k,v in res["results"][tname].items() if not k.endswith("_stderr,none") and k!="alias"}
    if acc_mine:
        m["acc_by_definition"]=float(np.mean(acc_mine)); m["acc_norm_by_definition(len(choice string incl. leading space))"]=float(np.mean(accn_mine))
    m["n_docs"]=len(samples)
    scores[tname]=m
with open(f"/tmp/lmcheck/lm_eval_requests{suffix}.jsonl","w") as fo:
    for r in rows: fo.write(json.dumps(r, ensure_ascii=False)+"\n")
json.dump({"info":info,"scores":scores,"configs":{k:{kk:str(vv) for kk,vv in res["configs"][k].items()} for k in tasks}}, open(f"/tmp/lmcheck/lm_eval_scores{suffix}.json","w"), indent=1)
if "arc_easy" in tasks:
    r0=[r for r in rows if r["task"]=="arc_easy"][0]
    ce, co = lm._encode_pair(r0["context"], r0["continuation"])
    print("FIRST_ARC_PAIR", json.dumps({"context":r0["context"],"continuation":r0["continuation"],"context_enc":ce,"continuation_enc":co,
          "context_tokens":tok.convert_ids_to_tokens(ce),"continuation_tokens":tok.convert_ids_to_tokens(co)}, ensure_ascii=False))
print(json.dumps(scores, indent=1))
