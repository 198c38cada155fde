#!/usr/bin/env python3
"""Reference values from llama.cpp (via llama-cpp-python) for ecomla.

This is a developer tool, NOT part of the build or CI: it needs
llama-cpp-python, installed by hand.

What it computes, for one GGUF model (SmolLM2-135M-Instruct.Q4_1):

  a. Tokenizer golden file  -> tests/data/tokenizer_golden.jsonl
     Each line of tests/data/tokenizer_texts.txt (split on "\\n" only) is
     tokenized with add_bos=False, special=False; a few extra multi-line
     texts (containing \\n, \\r\\n, ...) are added, and a few chat-template
     texts are tokenized with special=True (so <|im_start|> etc. become
     single special tokens). One JSON object per text:
     {"text": ..., "special": bool, "ids": [...]}.

  b. Perplexity exactly as llama.cpp's `llama-perplexity -c 512` computes it
     (tools/perplexity/perplexity.cpp, function perplexity()):
       - the file is read as bytes, ONE trailing '\\n' is dropped (like -f),
       - tokenized once with add_special=true, parse_special=false; BOS is only
         added if the GGUF says tokenizer.ggml.add_bos_token=true (false for
         SmolLM2, so there is no BOS anywhere, neither at the file start nor
         at the start of each chunk),
       - split into n_chunk = n_tokens // 512 non-overlapping chunks,
         each evaluated from an empty KV cache,
       - only the second half is scored: logits at positions [256, 510]
         predict tokens at positions [257, 511] (255 tokens per chunk),
       - ppl = exp(mean NLL) over all scored tokens of the first N chunks.
     Computed three times: flash attention off (llama-perplexity -fa off),
     on (what llama-perplexity's default -fa auto resolves to on a CPU
     build), and off with an f32 KV cache; they differ by ~0.3% because of
     the F16 rounding in each path.

  c. Speed on this machine with --threads threads (default 2), from
     llama.cpp's own counters (llama_perf_context): prefill tokens/s for one
     512-token batch (n_batch = n_ubatch = 512) and greedy batch-1 decode
     tokens/s for 64 tokens after contexts of 0, 512 and 2048 tokens; best of
     3 runs ("tok_per_s") and median, flash attention off and on. With only
     2 cores, any other load ruins these numbers: run on an idle machine.
     -> tests/reference/llama_cpp_bench.json (also holds the perplexity
     results, versions, CPU model and thread count).

  d. If the `gguf` package is installed: a dump of the GGUF metadata and
     tensor list -> tests/reference/smollm2_metadata.txt

How to run (from the repository root):

  pip install llama-cpp-python==0.3.36      # builds llama.cpp from source
  pip install gguf                          # optional, for part d
  python3 tests/reference/llama_cpp_reference.py models/SmolLM2-135M-Instruct.Q4_1.gguf

Options: --wiki PATH (default ../shared/data/wikitext2/test/wiki.test.tokens),
--chunks N (20), --threads N (2), --skip-ppl, --skip-bench (skipped sections
keep their previous values in the json). Takes ~12 min on 2 cores.
"""

import argparse
import ctypes
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import llama_cpp
from llama_cpp import Llama

REPO = Path(__file__).resolve().parents[2]
TEXTS_FILE = REPO / "tests/data/tokenizer_texts.txt"
GOLDEN_FILE = REPO / "tests/data/tokenizer_golden.jsonl"
BENCH_FILE = REPO / "tests/reference/llama_cpp_bench.json"
META_FILE = REPO / "tests/reference/smollm2_metadata.txt"
DEFAULT_WIKI = REPO.parent / "shared/data/wikitext2/test/wiki.test.tokens"

# Extra texts that cannot live in a one-text-per-line file.
MULTILINE_TEXTS = [
    "line one\nline two",
    "paragraph one\n\nparagraph two",
    "windows\r\nline endings\r\n",
    "trailing newline\n",
    "\n",
    "\n\n\n",
    " \n ",
    "spaces before newline   \nnext line",
    "a\n\tb\n\t\tc",
    "def f(x):\n    if x:\n        return 1\n    return 0\n",
    "\r",
    "mixed \r\n\n \t\n end",
    " = Valkyria Chronicles III = \n \n Senjō no Valkyria 3 : <unk> Chronicles ( Japanese : 戦場のヴァルキュリア3 , lit . Valkyria of the Battlefield 3 ) \n",
]

# Texts tokenized with special=True (special tokens parsed as such).
SPECIAL_TEXTS = [
    "<|im_start|>user\nHello!<|im_end|>\n",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>",
    "text<|im_end|>more text",
    " <|im_start|> spaced <|im_end|> ",
    "<|im_start|><|im_end|><|endoftext|>",
    "<|im_start|>assistant Hi!<|im_end|>",
    "not special: <|im_sta rt|> <im_start> <|IM_START|>",
]

N_CTX = 512


def load(model, n_ctx, threads, logits_all, **kw):
    return Llama(model_path=str(model), n_ctx=n_ctx, n_batch=512, n_ubatch=512,
                 n_threads=threads, n_threads_batch=threads, logits_all=logits_all,
                 verbose=False, **kw)


def meta_bool(llm, key):
    v = llm.metadata.get(key)
    return None if v is None else v.lower() == "true"


# ---------------------------------------------------------------- a. tokenizer
def tokenizer_golden(llm):
    lines = TEXTS_FILE.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    cases = [(t, False) for t in lines] + [(t, False) for t in MULTILINE_TEXTS] \
        + [(t, True) for t in SPECIAL_TEXTS]
    with open(GOLDEN_FILE, "w", encoding="utf-8", newline="\n") as f:
        for text, special in cases:
            ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)
            f.write(json.dumps({"text": text, "special": special, "ids": ids},
                               ensure_ascii=False) + "\n")
    return len(cases)


# --------------------------------------------------------------- b. perplexity
def log_softmax_nll(logits, targets):
    x = logits.astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(x - m).sum(axis=1))
    return lse - x[np.arange(len(targets)), targets]


def wiki_tokens(llm, wiki):
    data = Path(wiki).read_bytes()
    if data.endswith(b"\n"):          # llama.cpp's -f drops one trailing newline
        data = data[:-1]
    # common_tokenize(ctx, text, add_special=true, parse_special=false)
    return llm.tokenize(data, add_bos=True, special=False)


def perplexity(model, wiki, n_chunks, threads, flash_attn=False, kv_f32=False):
    kv = dict(type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32) if kv_f32 else {}
    llm = load(model, N_CTX, threads, logits_all=True, flash_attn=flash_attn, **kv)
    add_bos = meta_bool(llm, "tokenizer.ggml.add_bos_token")
    toks = wiki_tokens(llm, wiki)
    if add_bos:
        raise SystemExit("this script mirrors the add_bos=false path only")
    assert toks[0] != llm.token_bos(), "unexpected BOS"
    n_chunks = min(n_chunks, len(toks) // N_CTX)
    first = N_CTX // 2
    nll_sum, count, running, per_chunk = 0.0, 0, [], []
    for i in range(n_chunks):
        chunk = toks[i * N_CTX:(i + 1) * N_CTX]
        llm.reset()                          # n_tokens=0 -> eval() clears the KV cache
        llm.eval(chunk)
        nll = log_softmax_nll(llm.scores[first:N_CTX - 1], np.array(chunk[first + 1:N_CTX]))
        nll_sum += nll.sum()
        count += len(nll)
        running.append(math.exp(nll_sum / count))
        per_chunk.append(math.exp(nll.mean()))
        print(f"[{i + 1}]{running[-1]:.4f},", end="", flush=True)
    print()
    return {
        "definition": "llama-perplexity -c 512 (no BOS; score tokens [257,511] of each chunk "
                      "from logits [256,510])",
        "add_bos_token": add_bos, "flash_attn": flash_attn,
        "kv_cache_type": "f32" if kv_f32 else "f16",
        "n_ctx": N_CTX, "n_chunks": n_chunks, "scored_per_chunk": N_CTX - first - 1,
        "n_tokens_file": len(toks), "first_tokens": toks[:16],
        "ppl": running[-1], "running_ppl": running, "chunk_ppl": per_chunk,
    }


# -------------------------------------------------------------------- c. speed
def perf(llm):
    llama_cpp.llama_synchronize(llm.ctx)    # the counters are updated on synchronize
    d = llama_cpp.llama_perf_context(llm.ctx)
    return d.t_p_eval_ms, d.n_p_eval, d.t_eval_ms, d.n_eval


def reset_perf(llm):
    llama_cpp.llama_synchronize(llm.ctx)    # flush pending work into the old counters
    llama_cpp.llama_perf_context_reset(llm.ctx)


def bench(model, toks, threads, flash_attn, reps=3, n_gen=64):
    llm = load(model, 4096, threads, logits_all=False, flash_attn=flash_attn)
    n_vocab = llm.n_vocab()
    out = {"flash_attn": flash_attn, "reps": reps}

    llm.reset(); llm.eval(toks[:512])        # warm-up
    pp, pp_wall = [], []
    for _ in range(reps):
        llm.reset()
        reset_perf(llm)
        t0 = time.perf_counter(); llm.eval(toks[:512]); t1 = time.perf_counter()
        t_ms, n, _, _ = perf(llm)
        assert n == 512
        pp.append(1e3 * n / t_ms); pp_wall.append(512 / (t1 - t0))
    out["prefill_512"] = {"tok_per_s": max(pp), "tok_per_s_median": statistics.median(pp),
                          "tok_per_s_all": pp, "wall_tok_per_s": max(pp_wall)}

    for ctx_len in (0, 512, 2048):
        tg, tg_wall, text = [], [], None
        for _ in range(reps):
            llm.reset()
            if ctx_len:
                llm.eval(toks[:ctx_len])
            reset_perf(llm)
            tok, gen = toks[ctx_len], []
            t0 = time.perf_counter()
            for _ in range(n_gen):
                llm.eval([tok])
                logits = np.ctypeslib.as_array(
                    llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
                tok = int(logits.argmax()); gen.append(tok)
            t1 = time.perf_counter()
            _, _, t_ms, n = perf(llm)
            assert n == n_gen
            tg.append(1e3 * n / t_ms); tg_wall.append(n_gen / (t1 - t0))
            text = gen
        out[f"decode_after_{ctx_len}"] = {
            "n_gen": n_gen, "tok_per_s": max(tg), "tok_per_s_median": statistics.median(tg),
            "tok_per_s_all": tg, "ms_per_tok": 1e3 / max(tg), "wall_tok_per_s": max(tg_wall),
            "greedy_ids_first16": text[:16]}
    return out


def cpu_model():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def ggml_build():
    for lib in Path(llama_cpp.__file__).parent.glob("lib/libggml-base.*"):
        try:
            g = ctypes.CDLL(str(lib))
            g.ggml_version.restype = g.ggml_commit.restype = ctypes.c_char_p
            return {"ggml_version": g.ggml_version().decode(), "ggml_commit": g.ggml_commit().decode()}
        except (OSError, AttributeError):
            pass
    return {}


# ----------------------------------------------------------------- d. metadata
def metadata_dump(model):
    try:
        import gguf
    except ImportError:
        print("gguf not installed: skipping metadata dump")
        return
    r = gguf.GGUFReader(str(model))
    from importlib.metadata import version
    out = [f"# GGUF metadata of {Path(model).name} (dumped with gguf {version('gguf')})",
           f"# {len(r.fields)} key/value pairs (incl. GGUF.* header fields), {len(r.tensors)} tensors", ""]
    for key, f in r.fields.items():
        vt = f.types[0].name if f.types else "?"
        if f.types and f.types[0] == gguf.GGUFValueType.ARRAY:
            vals = f.contents()
            et = f.types[1].name if len(f.types) > 1 else "?"
            if len(vals) > 16:
                out.append(f"{key}: ARRAY[{et}] len={len(vals)} first5={vals[:5]!r}")
            else:
                out.append(f"{key}: ARRAY[{et}] len={len(vals)} {vals!r}")
        else:
            out.append(f"{key}: {vt} = {f.contents()!r}")
    out += ["", "# tensors: name, type, shape (ggml order: ne0 first), n_elements, offset"]
    for t in r.tensors:
        out.append(f"{t.name:32s} {t.tensor_type.name:6s} {[int(x) for x in t.shape]!s:16s} "
                   f"{int(t.n_elements):>10d} {int(t.data_offset)}")
    META_FILE.write_text("\n".join(out) + "\n", encoding="utf-8")
    print(f"wrote {META_FILE.relative_to(REPO)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--wiki", default=str(DEFAULT_WIKI))
    ap.add_argument("--chunks", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-ppl", action="store_true")
    ap.add_argument("--skip-bench", action="store_true")
    a = ap.parse_args()

    metadata_dump(a.model)

    tok_llm = load(a.model, N_CTX, a.threads, logits_all=False)
    n = tokenizer_golden(tok_llm)
    print(f"wrote {GOLDEN_FILE.relative_to(REPO)} ({n} texts); "
          f"tokenizer.ggml.pre={tok_llm.metadata.get('tokenizer.ggml.pre')}, "
          f"add_bos_token={tok_llm.metadata.get('tokenizer.ggml.add_bos_token')}")

    # sections that are skipped keep their previous values
    old = json.loads(BENCH_FILE.read_text()) if BENCH_FILE.exists() else {}
    result = {
        "llama_cpp_python": llama_cpp.__version__,
        "llama_cpp_system_info": llama_cpp.llama_print_system_info().decode().strip(),
        **ggml_build(),
        "model": Path(a.model).name,
        "cpu": cpu_model(), "n_cpus": os.cpu_count(), "threads": a.threads,
        "python": platform.python_version(),
        "loadavg_before": os.getloadavg(),
    }
    # "perplexity": flash attention off (llama-perplexity -fa off), f16 KV cache;
    # "perplexity_flash_attn": on (what -fa auto, the default, picks on CPU);
    # "perplexity_f32_kv": off, with an f32 KV cache (-ctk f32 -ctv f32).
    ppl_keys = {"perplexity": (False, False), "perplexity_flash_attn": (True, False),
                "perplexity_f32_kv": (False, True)}
    for key, (fa, kv_f32) in ppl_keys.items():
        if a.skip_ppl:
            if key in old:
                result[key] = old[key]
            continue
        result[key] = perplexity(a.model, a.wiki, a.chunks, a.threads, fa, kv_f32)
        print(f"PPL ({result[key]['n_chunks']} chunks, ctx {N_CTX}, flash_attn={fa}, "
              f"kv_f32={kv_f32}) = "
              f"{result[key]['ppl']:.6g}")
    if a.skip_bench:
        result.update({k: old[k] for k in ("bench", "loadavg_after") if k in old})
    if not a.skip_bench:
        toks = wiki_tokens(tok_llm, a.wiki)
        result["bench"] = [bench(a.model, toks, a.threads, fa) for fa in (False, True)]
        result["loadavg_after"] = os.getloadavg()
        for b in result["bench"]:
            print(f"flash_attn={b['flash_attn']}: prefill512 {b['prefill_512']['tok_per_s']:.1f} tok/s; "
                  + "; ".join(f"decode@{c} {b[f'decode_after_{c}']['tok_per_s']:.1f} tok/s"
                              for c in (0, 512, 2048)))
    BENCH_FILE.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {BENCH_FILE.relative_to(REPO)}")


if __name__ == "__main__":
    sys.exit(main())
