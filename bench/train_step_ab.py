"""Which training levers pay, step by step: one process, one tiny GPT-2 per variant, their steps alternated (A, B, C,
A, B, C, ...) so that a busy moment of a shared machine lands on every variant alike; the median step of each counts.

Variants (each differs from "ours" by one lever, in the precision our loop picks here): the full-logits loss instead
of the fused chunked one; a key/value cache built at every forward (GPT-2's config default) instead of none; GPT-2's
tanh-GELU instead of the exact one; the forward through torch.compile (its compile time printed apart, not counted).
Prints ms/step per variant and "ours / that" per lever (above 1: the lever pays).
    python bench/train_step_ab.py [--steps 30] [--batch 8] [--seq 256] [--no-compile]
    python bench/train_step_ab.py --smoke      # seconds: toy sizes, no compile (CI runs it)
"""
import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per variant")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--no-compile", dest="compile", action="store_false")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    if args.smoke:
        args.steps, args.batch, args.seq, args.compile = 3, 2, 32, False

    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from pretrain.hardware import cpu_identity
    from pretrain.train import chunked_causal_lm_loss, keep_freed_memory, param_groups, pick_mixed_precision

    keep_freed_memory()
    precision = pick_mixed_precision("auto")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    cpu = cpu_identity()
    print(f"cpu: {cpu['model']}; ISA flags: {', '.join(cpu['flags']) or 'none'}; {torch.get_num_threads()} threads; "
          f"training in {'bf16' if precision == 'bf16' else 'fp32'} (--mixed-precision auto); tiny GPT-2, {args.batch} x {args.seq} tokens/step")

    def make(activation="gelu"):
        torch.manual_seed(0)
        config = GPT2Config(n_embd=256, n_layer=4, n_head=4, vocab_size=8192, n_positions=512, resid_pdrop=0.0,
                            embd_pdrop=0.0, attn_pdrop=0.0, activation_function=activation)
        model = GPT2LMHeadModel(config).to(dtype).train()
        return model, torch.optim.AdamW(param_groups(model, 0.1), lr=5e-4, fused=True)

    ids = torch.randint(0, 8192, (args.batch, args.seq))

    def stepper(model, optimizer, loss_of):
        def step():
            loss = loss_of(model)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return loss.item()
        return step

    def chunked(model, body=None):
        return chunked_causal_lm_loss(model, ids, body=body)

    variants = {
        "ours": stepper(*make(), chunked),
        "full-logits": stepper(*make(), lambda m: m(input_ids=ids, labels=ids, use_cache=False).loss),
        "kv-cache": stepper(*make(), lambda m: chunked_kv(m)),
        "tanh-gelu": stepper(*make("gelu_pytorch_tanh"), chunked),
    }

    def chunked_kv(model):  # the chunked loss over a forward that builds GPT-2's default key/value cache
        from pretrain.train import LinearCrossEntropy

        hidden = model.transformer(input_ids=ids, use_cache=True).last_hidden_state[:, :-1]
        return LinearCrossEntropy.apply(hidden.reshape(-1, hidden.size(-1)), model.lm_head.weight,
                                        ids[:, 1:].reshape(-1), 512)

    if args.compile:
        model, optimizer = make()
        body = torch.compile(model.transformer, dynamic=False)
        variants["compiled"] = stepper(model, optimizer, lambda m: chunked(m, body))
        t = time.perf_counter()
        variants["compiled"]()
        print(f"torch.compile: first step {time.perf_counter() - t:.1f} s (compiling; not counted)", flush=True)
    for step in variants.values():  # warm-up: kernels, allocator, caches
        step()
        step()
    times = {name: [] for name in variants}
    for _ in range(args.steps):
        for name, step in variants.items():
            t = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t)
    median = {name: statistics.median(ts) for name, ts in times.items()}
    tokens = args.batch * args.seq
    for name, m in median.items():
        print(f"{name:12s} {1000 * m:8.1f} ms/step (median of {args.steps}) = {tokens / m:8,.0f} tok/s")
    # a lever pays (time without it) / (time with it): above 1 it is worth having
    levers = {"fused chunked loss": ("full-logits", "ours"), "no key/value cache in training": ("kv-cache", "ours"),
              "exact GELU": ("tanh-gelu", "ours"), "torch.compile": ("ours", "compiled")}
    for lever, (without, with_) in levers.items():
        if without in median and with_ in median:
            print(f"lever {lever:31s}: {median[without] / median[with_]:.2f}")

if __name__ == "__main__":
    main()
