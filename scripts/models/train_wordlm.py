#!/usr/bin/env python3
"""Train the word-level next-word LSTM `wordlm` on Jane Austen's six novels and export it.

Corpus: Debian package r-cran-janeaustenr (public domain texts, package MIT), read from its
R lazy-load database (data/Rdata.rdx + Rdata.rdb) with PyPI `rdata`, without R.

    apt-get install -y r-cran-janeaustenr
    python scripts/models/train_wordlm.py [--out models/wordlm] [--steps N] [--quick]

Reproducible: fixed seed, fixed number of steps, 2 torch threads, seeded data order.
Writes model.onnx (tokens i32 [1,32] -> logits f32 [1,V]), model.toml, vocab.txt, PROVENANCE.md.
"""
import argparse
import collections
import gzip
import hashlib
import math
import os
import re
import struct
import tempfile
import time
import warnings
import zlib

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
JANEAUSTENR = "/usr/lib/R/site-library/janeaustenr"
BOOKS = ["sensesensibility", "prideprejudice", "mansfieldpark", "emma", "northangerabbey", "persuasion"]
PUNCT = set(".,;:!?")
PAD, UNK = 0, 1

HP = dict(
    seed=1234,
    vocab_size=6000,      # lines in vocab.txt, incl. <pad> and <unk>
    heldout_frac=0.05,    # last 5% of the tokens of each book
    seq_len=32,
    emb=128,
    hidden=256,
    batch=32,
    steps=1200,
    lr=4e-3,
    warmup=50,
    min_lr_frac=0.05,     # cosine decay to lr*min_lr_frac
    weight_decay=0.0,
    clip=1.0,
    dropout=0.1,          # on embeddings and on the LSTM output
    forget_bias=0.0,      # initial LSTM forget-gate bias (added to PyTorch's default init)
    pad_frac=0.3,         # fraction of training windows with random left padding
    sentence_start_frac=0.5,  # of the padded windows, fraction that start right after . ! ?
    threads=2,
    eval_every=300,       # held-out perplexity logged during training (not counted as training time)
)

# ----------------------------------------------------------------------------- corpus

def read_austen() -> dict:
    """Return {book: text} from janeaustenr's lazy-load database, without R."""
    import rdata
    warnings.simplefilter("ignore")  # rdata warns 'Unknown file type: assumed RDS'
    data = os.path.join(JANEAUSTENR, "data")
    with open(os.path.join(data, "Rdata.rdx"), "rb") as f:
        index = rdata.conversion.convert(rdata.parser.parse_data(gzip.decompress(f.read())))
    with open(os.path.join(data, "Rdata.rdb"), "rb") as f:
        rdb = f.read()
    out = {}
    for name, (off, length) in index["variables"].items():
        blob = rdb[int(off):int(off) + int(length)]
        raw_len = struct.unpack(">I", blob[:4])[0]
        ser = zlib.decompress(blob[4:])
        assert len(ser) == raw_len
        lines = rdata.conversion.convert(rdata.parser.parse_data(ser))
        out[str(name)] = "\n".join(str(x) for x in lines)
    assert sorted(out) == sorted(BOOKS), sorted(out)
    return out


_TOKEN_RE = re.compile(r"[.,;:!?]|[a-z']+")


def tokenize(text: str) -> list:
    """DESIGN.md tokenisation: lower-case; ’/‘ -> '; a token is one of . , ; : ! ? or a maximal
    run of [a-z'] with leading/trailing ' trimmed (dropped if empty); all else separates."""
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    out = []
    for m in _TOKEN_RE.finditer(text):
        t = m.group(0)
        if t[0] not in PUNCT:
            t = t.strip("'")
            if not t:
                continue
        out.append(t)
    return out


def build_vocab(tokens: list, size: int) -> list:
    counts = collections.Counter(tokens)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ["<pad>", "<unk>"] + [t for t, _ in ranked[: size - 2]]

# ----------------------------------------------------------------------------- model

class WordLM(nn.Module):
    def __init__(self, vocab: int, emb: int, hidden: int, dropout: float, forget_bias: float = 0.0):
        super().__init__()
        self.emb = nn.Embedding(vocab, emb, padding_idx=PAD)
        self.lstm = nn.LSTM(emb, hidden, num_layers=1, batch_first=True)
        self.proj = nn.Linear(hidden, emb)
        self.out_bias = nn.Parameter(torch.zeros(vocab))
        self.drop = nn.Dropout(dropout)
        nn.init.normal_(self.emb.weight, std=0.1)
        with torch.no_grad():
            self.emb.weight[PAD].zero_()
            self.lstm.bias_ih_l0[hidden:2 * hidden] += forget_bias  # gate order i, f, g, o

    def forward(self, x):                       # x: int64 [B, T]
        h, _ = self.lstm(self.drop(self.emb(x)))
        h = self.proj(self.drop(h))              # [B, T, emb]
        return F.linear(h, self.emb.weight, self.out_bias)  # tied output, [B, T, V]


class ExportWrapper(nn.Module):
    """tokens i32 [1,32] -> logits f32 [1,V] for the last position."""

    def __init__(self, lm: WordLM, seq_len: int):
        super().__init__()
        self.lm = lm
        self.seq_len = seq_len

    def forward(self, tokens):
        x = self.lm.emb(tokens.long())
        h, _ = self.lm.lstm(x)
        last = h.select(1, self.seq_len - 1)     # [1, hidden]; positive index (no Gather -1)
        p = self.lm.proj(last)
        return F.linear(p, self.lm.emb.weight, self.lm.out_bias)

# ----------------------------------------------------------------------------- data

class Batcher:
    """Random windows of seq_len+1 tokens inside one book's training part; a fraction of them
    get random left padding (pad id 0) with the loss masked on padded positions."""

    def __init__(self, books_ids: list, hp: dict, gen: torch.Generator):
        self.hp, self.gen = hp, gen
        self.data = torch.from_numpy(np.concatenate(books_ids)).long()
        n = hp["seq_len"] + 1
        starts, offset = [], 0
        for ids in books_ids:
            starts.append(np.arange(offset, offset + len(ids) - n + 1))
            offset += len(ids)
        self.starts = torch.from_numpy(np.concatenate(starts)).long()
        ends = torch.tensor([i for i, t in enumerate(self.data.tolist()) if t in SENT_END_IDS]) + 1
        ok = ends[(ends >= 0)]
        self.sent_starts = ok[torch.isin(ok, self.starts)]

    def batch(self):
        hp, g = self.hp, self.gen
        B, T = hp["batch"], hp["seq_len"]
        idx = self.starts[torch.randint(len(self.starts), (B,), generator=g)]
        padded = torch.rand(B, generator=g) < hp["pad_frac"]
        sent = torch.rand(B, generator=g) < hp["sentence_start_frac"]
        sidx = self.sent_starts[torch.randint(len(self.sent_starts), (B,), generator=g)]
        npad = torch.randint(1, T, (B,), generator=g)          # 1..T-1 pads
        idx = torch.where(padded & sent, sidx, idx)
        win = self.data[idx[:, None] + torch.arange(T + 1)[None, :]]  # [B, T+1]
        x, y = win[:, :-1].clone(), win[:, 1:].clone()
        mask = torch.ones(B, T, dtype=torch.bool)
        for b in torch.nonzero(padded).flatten().tolist():
            k = int(npad[b])
            # real tokens start at position k: shift the window right by k
            x[b, k:] = win[b, : T - k]
            y[b, k:] = win[b, 1: T - k + 1]
            x[b, :k] = PAD
            y[b, :k] = PAD
            mask[b, :k] = False
        return x, y, mask


SENT_END_IDS = set()


def evaluate(model: WordLM, books_ids: list, T: int, stride: int = 16) -> tuple:
    """Held-out perplexity: windows of T tokens with stride 16 inside each book's held-out
    part; each scored position has 16..31 tokens of context (the first window of a part
    scores all its positions)."""
    model.eval()
    nll, count = 0.0, 0
    with torch.no_grad():
        for ids in books_ids:
            ids = torch.from_numpy(ids).long()
            xs, ys, first = [], [], []
            for s in range(0, len(ids) - T - 1 + 1, stride):
                xs.append(ids[s:s + T]); ys.append(ids[s + 1:s + T + 1]); first.append(s == 0)
            for i in range(0, len(xs), 256):
                x = torch.stack(xs[i:i + 256]); y = torch.stack(ys[i:i + 256])
                logp = F.log_softmax(model(x), dim=-1)
                lp = logp.gather(-1, y[..., None])[..., 0]      # [B, T]
                for j in range(len(x)):
                    sl = lp[j] if first[i + j] else lp[j, T - stride:]
                    nll -= float(sl.sum()); count += sl.numel()
    model.train()
    return math.exp(nll / count), count

# ----------------------------------------------------------------------------- main

def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def predict(sess, vocab, word2id, text: str, k: int = 8):
    """Mimics the guest's type-ahead: returns (completing, [(word, prob)])."""
    toks = tokenize(text)
    completing = None
    if toks and not text[-1:].isspace() and toks[-1] not in word2id and toks[-1] not in PUNCT:
        completing = toks.pop()
    ids = [word2id.get(t, UNK) for t in toks][-32:]
    x = np.array([[PAD] * (32 - len(ids)) + ids], dtype=np.int32)
    logits = sess.run(["logits"], {"tokens": x})[0][0].astype(np.float64)
    ok = [i for i, w in enumerate(vocab) if i > UNK and w not in PUNCT
          and (completing is None or w.startswith(completing))]
    z = logits[ok]
    p = np.exp(z - z.max()); p /= p.sum()
    order = np.argsort(-p)[:k]
    return completing, [(vocab[ok[i]], float(p[i])) for i in order]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "wordlm"))
    ap.add_argument("--steps", type=int, default=HP["steps"])
    ap.add_argument("--quick", action="store_true", help="benchmark: 20 steps, no export")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a hyper-parameter (experiments only; the defaults made models/wordlm)")
    args = ap.parse_args()
    hp = dict(HP, steps=args.steps if not args.quick else 20)
    for kv in args.set:
        k, v = kv.split("=", 1)
        assert k in HP, k
        hp[k] = type(HP[k])(v)

    torch.manual_seed(hp["seed"]); np.random.seed(hp["seed"])
    torch.set_num_threads(hp["threads"])

    texts = read_austen()
    toks = {b: tokenize(texts[b]) for b in BOOKS}
    split = {b: int(len(toks[b]) * (1 - hp["heldout_frac"])) for b in BOOKS}
    train_toks = [t for b in BOOKS for t in toks[b][:split[b]]]
    vocab = build_vocab(train_toks, hp["vocab_size"])
    assert len(vocab) == hp["vocab_size"] and len(set(vocab)) == len(vocab)
    word2id = {w: i for i, w in enumerate(vocab)}
    SENT_END_IDS.update(word2id[p] for p in ".!?")
    enc = lambda ts: np.array([word2id.get(t, UNK) for t in ts], dtype=np.int64)
    train_ids = [enc(toks[b][:split[b]]) for b in BOOKS]
    held_ids = [enc(toks[b][split[b]:]) for b in BOOKS]
    n_train = sum(map(len, train_ids)); n_held = sum(map(len, held_ids))
    unk_train = float(np.mean(np.concatenate(train_ids) == UNK))
    unk_held = float(np.mean(np.concatenate(held_ids) == UNK))
    print(f"tokens: train {n_train}, held-out {n_held}; unk rate train {unk_train:.3%}, held-out {unk_held:.3%}")

    gen = torch.Generator().manual_seed(hp["seed"])
    batcher = Batcher(train_ids, hp, gen)
    model = WordLM(len(vocab), hp["emb"], hp["hidden"], hp["dropout"], hp["forget_bias"])
    nparams = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])

    def lr_at(step):
        if step < hp["warmup"]:
            return hp["lr"] * (step + 1) / hp["warmup"]
        t = (step - hp["warmup"]) / max(1, hp["steps"] - hp["warmup"])
        return hp["lr"] * (hp["min_lr_frac"] + (1 - hp["min_lr_frac"]) * 0.5 * (1 + math.cos(math.pi * t)))

    t0 = time.time()
    log = []
    run = 0.0
    for step in range(hp["steps"]):
        for g_ in opt.param_groups:
            g_["lr"] = lr_at(step)
        x, y, _ = batcher.batch()
        logits = model(x)
        # <pad> (0) never occurs as a real target: ignore_index masks the padded positions
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=PAD)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), hp["clip"])
        opt.step()
        run = 0.98 * run + 0.02 * float(loss) if step else float(loss)
        if (step + 1) % 100 == 0 or step == hp["steps"] - 1 or args.quick:
            el = time.time() - t0
            print(f"step {step + 1}/{hp['steps']} loss {run:.3f} (ppl {math.exp(run):.1f}) "
                  f"lr {lr_at(step):.2e} {el:.0f}s ({el / (step + 1):.3f}s/step)", flush=True)
            log.append((step + 1, run, el, None))
        if not args.quick and ((step + 1) % hp["eval_every"] == 0 and step + 1 < hp["steps"]):
            te = time.time()
            vppl, _ = evaluate(model, held_ids, hp["seq_len"])
            print(f"  held-out perplexity at step {step + 1}: {vppl:.2f} ({time.time() - te:.0f}s)", flush=True)
            log[-1] = (step + 1, run, el, vppl)
            t0 += time.time() - te  # evaluation time is not training time
    train_time = time.time() - t0
    if args.quick:
        return

    t1 = time.time()
    ppl, n_scored = evaluate(model, held_ids, hp["seq_len"])
    print(f"held-out perplexity {ppl:.2f} over {n_scored} tokens ({time.time() - t1:.0f}s)")
    model.eval()

    # ------------------------------------------------------------------ export
    os.makedirs(args.out, exist_ok=True)
    onnx_path = os.path.join(args.out, "model.onnx")
    wrapper = ExportWrapper(model, hp["seq_len"]).eval()
    example = torch.zeros(1, hp["seq_len"], dtype=torch.int32)
    import onnxslim
    with tempfile.TemporaryDirectory() as td:
        raw = os.path.join(td, "raw.onnx")
        torch.onnx.export(wrapper, (example,), raw, dynamo=False, opset_version=13,
                          input_names=["tokens"], output_names=["logits"], do_constant_folding=True)
        raw_ops = collections.Counter(n.op_type for n in onnx.load(raw).graph.node)
        slim = onnxslim.slim(raw)
    slim.producer_name = "edgenn scripts/models/train_wordlm.py"
    slim.doc_string = "wordlm: next-word LSTM trained on Jane Austen's novels; tokens i32 [1,32] -> logits [1,V]"
    onnx.checker.check_model(slim, full_check=True)
    onnx.save(slim, onnx_path)
    m = onnx.load(onnx_path)
    ops = collections.Counter(n.op_type for n in m.graph.node)
    print("raw ops:", dict(raw_ops)); print("slim ops:", dict(ops))
    ins = [(i.name, [d.dim_value for d in i.type.tensor_type.shape.dim], i.type.tensor_type.elem_type) for i in m.graph.input]
    outs = [(o.name, [d.dim_value for d in o.type.tensor_type.shape.dim], o.type.tensor_type.elem_type) for o in m.graph.output]
    assert ins == [("tokens", [1, 32], onnx.TensorProto.INT32)], ins
    assert outs == [("logits", [1, len(vocab)], onnx.TensorProto.FLOAT)], outs

    with open(os.path.join(args.out, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")

    so = ort.SessionOptions(); so.intra_op_num_threads = 2
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    # torch vs onnxruntime on held-out windows, some left-padded
    rng = np.random.default_rng(0)
    maxdiff, agree = 0.0, 0
    allheld = np.concatenate(held_ids)
    for i in range(50):
        s = int(rng.integers(0, len(allheld) - 32))
        w = allheld[s:s + 32].copy()
        k = int(rng.integers(0, 32)) if i % 2 else 0
        w[:k] = PAD
        x = w[None].astype(np.int32)
        o = sess.run(["logits"], {"tokens": x})[0]
        with torch.no_grad():
            t = wrapper(torch.from_numpy(x)).numpy()
        maxdiff = max(maxdiff, float(np.abs(o - t).max()))
        agree += int(o.argmax() == t.argmax())
    print(f"torch vs ort: max |logit diff| {maxdiff:.2e}, argmax agree {agree}/50")
    assert maxdiff < 1e-3 and agree == 50
    # tract (the gateway's other backend, same version as the tract-onnx crate) vs onnxruntime
    import tract
    tm = tract.onnx().load(onnx_path).into_model().into_runnable()
    tract_diff = 0.0
    for i in range(10):
        s = int(rng.integers(0, len(allheld) - 32))
        w = allheld[s:s + 32].copy()
        w[: int(rng.integers(0, 32))] = PAD
        x = w[None].astype(np.int32)
        tract_diff = max(tract_diff, float(np.abs(tm.run([x])[0].to_numpy() - sess.run(["logits"], {"tokens": x})[0]).max()))
    print(f"tract {tract.version()} vs ort: max |logit diff| {tract_diff:.2e}")
    assert tract_diff < 1e-3

    examples = ["i am very glad to", "she was not", "she was not acq", "mr. darcy",
                "it is a truth universally acknowledged, that a single man in possession of a good",
                "emma could not", "i do not", "he", "captain wentworth was", "my dear"]
    ex_lines = []
    for text in examples:
        comp, top = predict(sess, vocab, word2id, text)
        s = ", ".join(f"{w} {p:.3f}" for w, p in top)
        print(f"{text!r} (completing {comp!r}): {s}")
        ex_lines.append(f"| `{text}` | {'`' + comp + '`' if comp else 'null'} | {s} |")

    toml = f'''name = "wordlm"
file = "model.onnx"
backend = "ort"
description = "Word-level next-word LSTM (emb 128, LSTM 256, tied output) trained on Jane Austen's six novels. Input: the last 32 token ids, left-padded with 0 (<pad>). Output: next-token logits; vocab.txt line i = token i ({len(vocab)} lines)."

[[inputs]]
name = "tokens"
type = "i32"
shape = [1, 32]

[[outputs]]
name = "logits"
type = "f32"
shape = [1, {len(vocab)}]
'''
    with open(os.path.join(args.out, "model.toml"), "w") as f:
        f.write(toml)

    from importlib.metadata import version
    vers = {n: version(n) for n in ("torch", "onnx", "onnxslim", "onnxruntime", "tract", "numpy", "rdata")}
    size = os.path.getsize(onnx_path)
    digest = sha256(onnx_path)
    L = []
    L.append("# wordlm: provenance\n")
    L.append("A small word-level language model for type-ahead: given the last 32 tokens it predicts the "
             "next token. Trained from scratch by `scripts/models/train_wordlm.py` on Jane Austen's six "
             "novels.\n")
    L.append("## Corpus and licences\n")
    L.append("- Texts: Jane Austen, *Sense and Sensibility*, *Pride and Prejudice*, *Mansfield Park*, *Emma*, "
             "*Northanger Abbey*, *Persuasion*: public domain.")
    L.append("- Taken from the Debian package `r-cran-janeaustenr` 1.0.0 (R package janeaustenr by Julia "
             "Silge; licence MIT per `/usr/share/doc/r-cran-janeaustenr/copyright`, \"Copyright: 2016-2017 "
             "Julia Silge, License: MIT\"), read from its lazy-load database `data/Rdata.rdx`/`Rdata.rdb` "
             f"with PyPI `rdata` {vers['rdata']} (no R needed).")
    L.append("- The trained weights and vocabulary are derived from public-domain text only.\n")
    L.append("## Tokenisation and vocabulary\n")
    L.append("Exactly as DESIGN.md: lower-case; `’`/`‘` -> `'`; tokens are `. , ; : ! ?` or maximal runs of "
             "`[a-z']` with leading/trailing `'` trimmed (dropped if empty); every other character separates "
             "(book lines are joined with newlines). `vocab.txt`: line 0 `<pad>`, line 1 `<unk>`, then the "
             f"{len(vocab) - 2} most frequent tokens of the training split (ties by string), {len(vocab)} lines. "
             "Punctuation tokens are in the vocabulary (the guest never suggests them).\n")
    L.append(f"- tokens: training {n_train}, held-out {n_held} (the last {hp['heldout_frac']:.0%} of each book's tokens)")
    L.append(f"- `<unk>` rate: training {unk_train:.2%}, held-out {unk_held:.2%}\n")
    L.append("## Model\n")
    L.append(f"Embedding {hp['emb']} (row 0 = `<pad>` fixed at zero) -> 1-layer LSTM {hp['hidden']} -> linear "
             f"{hp['hidden']}->{hp['emb']} -> output tied to the embedding matrix (`logits = p @ E^T + b`). "
             f"{nparams} parameters.\n")
    L.append("Training: random windows of 33 tokens (32 inputs, 32 targets) inside each book's training part, "
             f"loss on every position; {hp['pad_frac']:.0%} of windows are shifted right by a random 1..31 "
             "positions and left-padded with `<pad>` (loss masked on the padded positions), half of those "
             "starting right after a `. ! ?`, so that short inputs (mostly pads) work. Adam, linear warm-up "
             "then cosine decay, gradient clipping, dropout on embeddings and LSTM output. "
             "Fixed seed and fixed number of steps, 2 torch threads.\n")
    L.append("| hyper-parameter | value |\n| --- | --- |")
    for k, v in hp.items():
        L.append(f"| {k} | {v} |")
    L.append("")
    L.append("## Results\n")
    L.append(f"- held-out perplexity: **{ppl:.1f}** over {n_scored} scored tokens (all tokens incl. `<unk>` "
             "and punctuation; windows of 32 with stride 16, each scored token has 16..31 tokens of context)")
    L.append(f"- training: {hp['steps']} steps x {hp['batch']} windows x {hp['seq_len']} tokens in "
             f"{train_time:.0f} s wall on 2 CPU threads (shared machine); final running training loss "
             f"{log[-1][1]:.3f}")
    L.append(f"- torch vs onnxruntime {vers['onnxruntime']} on 50 held-out windows (half left-padded): "
             f"max |logit diff| {maxdiff:.1e}, argmax agreement {agree}/50")
    L.append(f"- tract {tract.version()} (PyPI `tract`, same version as the `tract-onnx` crate) vs onnxruntime on "
             f"10 held-out windows (left-padded): max |logit diff| {tract_diff:.1e}\n")
    L.append("Example type-ahead (onnxruntime; the guest's rule: a trailing fragment that is not a whole "
             "vocabulary word is removed from the context and completed; probabilities renormalised over "
             "the candidate words, `<pad>`, `<unk>` and punctuation excluded):\n")
    L.append("| text | completing | top suggestions (prob) |\n| --- | --- | --- |")
    L += ex_lines
    L.append("")
    L.append("## Graph\n")
    L.append(f"- file `model.onnx`: {size} bytes, sha256 `{digest}`")
    L.append(f"- opset {m.opset_import[0].version}, IR version {m.ir_version}; input `tokens` i32 [1,32] (cast to "
             f"int64 inside), output `logits` f32 [1,{len(vocab)}] (last position only, no softmax); static shapes")
    L.append("- ops after onnxslim (count): " + ", ".join(f"{k} {v}" for k, v in sorted(ops.items())))
    L.append("- ops before onnxslim (count): " + ", ".join(f"{k} {v}" for k, v in sorted(raw_ops.items())) + "\n")
    L.append("## Re-make\n")
    L.append("```sh\nscripts/models/remake.sh wordlm     # apt-get install r-cran-janeaustenr, venv, this step\n"
             "# or, inside the venv from scripts/models/requirements.txt:\n"
             "python scripts/models/train_wordlm.py\n```\n")
    L.append("Tool versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()) + ". The result is "
             "reproducible on the same versions and CPU type; the training time varies with load.")
    with open(os.path.join(args.out, "PROVENANCE.md"), "w") as f:
        f.write("\n".join(L) + "\n")
    print(f"wrote {args.out}: model.onnx {size} bytes sha256 {digest}")


if __name__ == "__main__":
    main()
