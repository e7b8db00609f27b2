"""Training throughput: our Accelerate loop vs transformers' Trainer (its default fp32), same model, data and batch.

Both run in this one invocation, each in a fresh subprocess, on the tiny and the small config, interleaved (Trainer,
ours, ours compiled, Trainer, ...) `--repeats` times; each side's fastest run counts (noise on a shared machine only
ever slows a run down), and every run is printed. First the CPU model and its ISA flags (amx_bf16, avx512_bf16, avx2).
Per run: tokens/s after the warm-up steps, MFU twice (model FLOPs over this device's square-matmul peak, and over
its rate at the products that model really multiplies, so the headroom left is visible; both probed once per
machine and cached, see pretrain/hardware.py), and the train loss after the same number of tokens. "ours-compiled"
is our loop with --compile (torch.compile); its compile time, the first step, is printed apart and not counted.
`--levers` also times our loop with each lever off in turn: autocast instead of bf16 weights with fp32 master copies
(bf16 only); full fp32 logits instead of the fused chunked loss; SDPA instead of the short-context attention; glibc's
default malloc thresholds instead of keeping freed tensor memory for reuse; GPT-2's tanh-GELU instead of the exact
GELU (the model config changes, so that one row is "ours" on the old config). Last lines: speedup_vs_trainer (tiny),
speedup_vs_trainer_compiled, and the same for small.
    python bench/train_throughput.py [--steps-tiny 40] [--steps-small 6] [--repeats 2] [--skip-small] [--levers]
    python bench/train_throughput.py --smoke    # seconds: toy sizes, one run each, no compile (CI runs it)
    python bench/train_throughput.py --device cuda [--cuda-models small,large]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

WORKER = r'''
import json, sys, time, torch
spec = json.loads(sys.argv[1])
from transformers import AutoTokenizer
from pretrain.corpus import data_files
from pretrain.models import make_config
from pretrain.train import ConstantLengthDataset, flops_per_token
tok = AutoTokenizer.from_pretrained(spec["tokenizer"])
config = make_config(spec["model"], tok)
files = data_files(spec["corpus"])
seq = spec["seq_length"]
if spec["which"].startswith("ours"):
    from pretrain.train import TrainConfig, train
    cfg = TrainConfig(model=spec["model"], tokenizer=spec["tokenizer"], corpus=spec["corpus"], repo=spec["repo"],
                      run=spec["run"], max_steps=spec["steps"], save_every=10**9, batch_size=spec["batch"],
                      seq_length=seq, lr=spec["lr"], eval_every=10**9, eval_batches=1,
                      output_dir=spec["out"], **spec.get("options", {}))
    result = train(cfg)
    compile_s = result["compile_s"]
    hist = result["history"]
    times, losses, n_params, dtype = [h["time"] for h in hist], [h["train_loss"] for h in hist], result["n_params"], torch.bfloat16 if result["precision"] == "bf16" else torch.float32
else:
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments, TrainerCallback
    from torch.utils.data import IterableDataset
    class AsDicts(IterableDataset):
        def __init__(self, ds): self.ds = ds
        def __iter__(self):
            for t in self.ds: yield {"input_ids": t, "labels": t}
    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_config(config)
    n_params = model.num_parameters()
    ds = AsDicts(ConstantLengthDataset(tok, files["train"], seq, 256, 1))
    times, losses = [], []
    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw): times.append(time.perf_counter())
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs: losses.append(logs["loss"])
    args = TrainingArguments(output_dir=spec["out"], max_steps=spec["steps"], per_device_train_batch_size=spec["batch"],
                             learning_rate=spec["lr"], weight_decay=0.1, lr_scheduler_type="cosine", max_grad_norm=1.0,
                             logging_steps=1, save_strategy="no", report_to=[], use_cpu=spec["device"] == "cpu",
                             bf16=spec["which"] == "trainer-bf16", seed=1, dataloader_num_workers=0, disable_tqdm=True)
    Trainer(model=model, args=args, train_dataset=ds, callbacks=[Clock()]).train()
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    compile_s = None
k = spec["warm"]
tokens = (len(times) - 1 - k) * spec["batch"] * seq
tok_s = tokens / (times[-1] - times[k])
tail = losses[-5:]
print(json.dumps({"tok_s": tok_s, "flops_s": tok_s * flops_per_token(config, n_params, seq), "loss": sum(tail) / len(tail), "tokens": len(losses) * spec["batch"] * seq,
                  "dtype": str(dtype).split(".")[-1], "n_params": n_params, "compile_s": compile_s}))
'''


def run(spec):
    env = dict(os.environ, PYTHONPATH=ROOT)
    if spec["device"] == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # our loop takes a GPU wherever one is visible
    r = subprocess.run([sys.executable, "-c", WORKER, json.dumps(spec)], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"{spec['which']} {spec['model']} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def write_config(preset, tokenizer_dir, path, **overrides):
    """A preset's config with some fields changed, as a config.json both sides accept as --model."""
    from transformers import AutoTokenizer

    from pretrain.models import make_config

    config = make_config(preset, AutoTokenizer.from_pretrained(tokenizer_dir)).to_dict()
    with open(path, "w") as f:
        json.dump({**config, **overrides}, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps-tiny", type=int, default=40)
    ap.add_argument("--steps-small", type=int, default=6)
    ap.add_argument("--skip-small", action="store_true")
    ap.add_argument("--repeats", type=int, default=2, help="tiny: interleaved runs per side (the fastest counts)")
    ap.add_argument("--repeats-small", type=int, default=1)
    ap.add_argument("--corpus-files", type=int, default=800)
    ap.add_argument("--smoke", action="store_true", help="seconds: tiny at toy sizes, one run per side (for CI)")
    ap.add_argument("--levers", action="store_true", help="tiny: also our loop with each lever turned off")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="cuda: small (8 x 1024) and large (GPT-2 XL, 4 x 1024) on the GPU, against the Trainer in fp32 "
                         "and with --bf16 (its mixed precision)")
    ap.add_argument("--steps-cuda", type=int, default=40)
    ap.add_argument("--cuda-models", default="small,large", help="--device cuda: which presets, comma-separated")
    args = ap.parse_args()
    if args.smoke:
        args.corpus_files, args.skip_small, args.repeats = min(args.corpus_files, 60), True, 1
    sys.path.insert(0, ROOT)
    import sysconfig

    from pretrain.corpus import FilterConfig, build_corpus
    from pretrain.tokenizer import train_tokenizer

    import torch

    from pretrain.hardware import cpu_identity, device_name, model_peak_flops, peak_flops

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device is visible; run on a GPU machine or drop --device")
    device = torch.device(args.device)
    cpu = cpu_identity()
    print(f"cpu: {cpu['model']}; ISA flags: {', '.join(cpu['flags']) or 'none of amx_bf16, avx512_bf16, avx2'}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads" +
          (f"; device: {device_name(device)}" if args.device == "cuda" else ""))
    # MFU's denominators (pretrain.hardware), probed afresh here, outside any timed run, so every row shares them: the
    # square-matmul peak per dtype, and per model the rate at the products that model really multiplies
    peaks = {str(dt).split(".")[-1]: peak_flops(dt, device, refresh=True) for dt in (torch.float32, torch.bfloat16)}
    from pretrain.train import pick_mixed_precision

    bf16 = args.device == "cuda" or pick_mixed_precision("auto") == "bf16"  # what our loop trains in here
    print(f"our loop trains in {'bf16' if bf16 else 'fp32'} here (--mixed-precision auto); the Trainer in fp32")
    print(f"square matmul peak ({args.device}): " + ", ".join(f"{k} {v / 1e9:,.0f} GFLOP/s" for k, v in peaks.items()))
    with tempfile.TemporaryDirectory() as tmp:
        corpus, tok = os.path.join(tmp, "corpus"), os.path.join(tmp, "tok")
        build_corpus([sysconfig.get_paths()["stdlib"]], corpus, FilterConfig(), valid_fraction=0.05,
                     max_files=args.corpus_files)
        train_tokenizer(corpus, 8192, tok)
        if args.smoke:  # the same code path at toy sizes, so that a test notices when the bench breaks
            configs = [("tiny", 6, 2, 64, 2, 1)]
        elif args.device == "cuda":
            cuda = {"small": ("small", args.steps_cuda, 8, 1024, 5, args.repeats),
                    "large": ("large", args.steps_cuda // 2, 4, 1024, 3, 1)}
            configs = [cuda[m] for m in args.cuda_models.split(",")]
        else:
            configs = [("tiny", args.steps_tiny, 8, 256, 10, args.repeats)]
            if not args.skip_small:
                configs.append(("small", args.steps_small, 2, 1024, 1, args.repeats_small))
        speedups = {}
        from transformers import AutoTokenizer

        from pretrain.models import make_config

        for model, steps, batch, seq, warm, repeats in configs:
            model_config = make_config(model, AutoTokenizer.from_pretrained(tok))
            model_peaks = {}  # per dtype: the rate at this model's own products (unchunked loss: one for both sides)
            bases = ("trainer", "trainer-bf16") if args.device == "cuda" else ("trainer",)
            variants = {which: ({}, model) for which in (*bases, "ours")}
            if not args.smoke:  # compiling takes a minute or more on 2 cores
                variants["ours-compiled"] = ({"compile": True}, model)  # its compile time printed apart
            if args.levers and model == "small" and args.device == "cuda":
                variants.update({"ours-autocast": ({"master_weights": False}, model),
                                 "ours-nochunk": ({"chunked_loss": False}, model)})
            elif args.levers and model == "tiny":
                tanh = os.path.join(tmp, "tiny-tanh-gelu.json")
                write_config(model, tok, tanh, activation_function="gelu_pytorch_tanh")
                if bf16:  # master weights and the bmm attention are bf16 levers: in fp32 those rows equal "ours"
                    variants.update({"ours-autocast": ({"master_weights": False}, model),
                                     "ours-sdpa": ({"short_attention": False}, model)})
                variants.update({"ours-nochunk": ({"chunked_loss": False}, model),
                                 "ours-malloc": ({"reuse_memory": False}, model),
                                 "ours-tanh-gelu": ({}, tanh)})
            runs = {which: [] for which in variants}
            for _ in range(repeats):
                for which, (options, config) in variants.items():
                    spec = {"which": which, "device": args.device, "options": options, "model": config,
                            "tokenizer": tok, "corpus": corpus, "steps": steps, "batch": batch, "seq_length": seq, "lr": 5e-4, "warm": warm,
                            "repo": os.path.join(tmp, f"hub-{model}-{len(runs[which])}-{which}"), "run": f"bench-{model}",
                            "out": os.path.join(tmp, f"out-{which}-{model}-{len(runs[which])}")}
                    r = run(spec)
                    if r["dtype"] not in model_peaks:
                        model_peaks[r["dtype"]] = model_peak_flops(model_config, batch * seq, getattr(torch, r["dtype"]),
                                                                   device, refresh=True)
                    r["mfu"] = r["flops_s"] / peaks[r["dtype"]]
                    r["mfu_model"] = r["flops_s"] / model_peaks[r["dtype"]]
                    runs[which].append(r)
                    print(f"{model:6s} {which:14s} {r['dtype']:9s} {r['tok_s']:10,.0f} tok/s  MFU {100 * r['mfu']:5.1f}% "
                          f"of the square peak, {100 * r['mfu_model']:5.1f}% of the model-shape peak "
                          f"({model_peaks[r['dtype']] / 1e9:,.0f} GFLOP/s)  "
                          f"loss after {r['tokens']:,} tokens: {r['loss']:.3f}" +
                          (f"  (compile: first step {r['compile_s']:.1f} s, not counted)" if r["compile_s"] else ""),
                          flush=True)
            best = {which: max(rs, key=lambda r: r["tok_s"]) for which, rs in runs.items()}
            for which, r in best.items():
                if which.startswith("ours-") and which != "ours-compiled":
                    print(f"{model}: lever {which[5:]:10s}: ours / that = {best['ours']['tok_s'] / r['tok_s']:.2f}")
            for base in bases:
                for ours in [o for o in ("ours", "ours-compiled") if o in best]:
                    speedups[(model, base, ours)] = best[ours]["tok_s"] / best[base]["tok_s"]
                    print(f"{model}: best of {repeats}: {ours} {best[ours]['tok_s']:,.0f} / {base} "
                          f"{best[base]['tok_s']:,.0f} tokens/s = {speedups[(model, base, ours)]:.2f}; loss at equal "
                          f"tokens {ours} {best[ours]['loss']:.3f}, {base} {best[base]['loss']:.3f}", flush=True)
    for (model, base, ours), ratio in speedups.items():
        name = "speedup_vs_" + base.replace("-", "_") + ("" if model == "tiny" else f"_{model}")
        name = ("cuda_" if args.device == "cuda" else "") + name + ("_compiled" if ours == "ours-compiled" else "")
        print(f"{name}: {ratio:.2f}")


if __name__ == "__main__":
    main()
