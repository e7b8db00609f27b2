"""The Accelerate training loop: one file, top to bottom. The same code runs on this CPU and under
`accelerate launch` on many GPUs; every checkpoint becomes a commit on the run's branch of the hub.

Order of business: config -> data (ConstantLengthDataset) -> model -> optimizer/schedule -> loop
(accumulate, clip, step, log, validate, checkpoint) -> done.
"""
from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from checkpoint_hub import TRAINING_STATE, TrainingState
from common import atomic
from common.errors import UserError
from pretrain.corpus import data_files, iter_contents
from pretrain.hardware import FLAGS, bf16_speedup, cpu_identity, forget_model_peak, model_peak_flops

# The course's data-science key tokens for the optional weighted loss.
KEYTOKENS = ("plt", "pd", "sk", "fit", "predict", " plt", " pd", " sk", " fit", " predict")


@dataclass
class TrainConfig:
    model: str
    tokenizer: str | None
    corpus: str
    repo: str
    run: str
    max_steps: int
    save_every: int
    resume: bool = False
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 5e-4
    weight_decay: float = 0.1
    warmup_steps: int = 0
    schedule: str = "cosine"
    seq_length: int | None = None  # default: the model's context
    seed: int = 1
    mixed_precision: str = "auto"  # auto -> bf16 on AMX CPUs and recent GPUs, fp16 on older GPUs
    gradient_checkpointing: bool = False
    keytoken_alpha: float = 0.0  # > 0 turns on the course's key-token weighted loss
    eval_every: int | None = None  # default: save_every
    eval_batches: int = 16
    shuffle_buffer: int = 256
    num_workers: int = 1  # tokenization in a DataLoader worker, off the training process (measured: +20% on tiny)
    max_grad_norm: float = 1.0
    output_dir: str | None = None  # accelerator state, TensorBoard logs; default runs/<run>
    objective: str = "clm"  # clm: next-token (GPT-2); mlm: masked tokens (DistilBERT-style encoders)
    init: str | None = None  # a save_pretrained folder to start from (domain adaptation); its tokenizer by default
    whole_word_masking: bool = False  # mlm: mask every token of a word together
    mlm_probability: float = 0.15
    master_weights: bool = True  # bf16: bf16 parameters + fp32 master weights; False: autocast over fp32 weights
    chunked_loss: bool = True  # GPT-2 on one process: cross-entropy a block of rows at a time (no fp32 logits)
    short_attention: bool = True  # causal LM, bf16 on a CPU, context <= 256: pretrain.attention instead of SDPA
    reuse_memory: bool = True  # on a CPU with glibc: keep freed tensor memory for reuse (see keep_freed_memory)
    compile: bool = False  # torch.compile the model's forward (inductor): a one-off compile, then faster steps


class ConstantLengthDataset(IterableDataset):
    """Streams documents, joins them with EOS, cuts exact `seq_length` chunks and shuffles them in a buffer.

    Sharding: documents are dealt round-robin to (process, dataloader worker) pairs, so every document is
    seen by exactly one of them. The shuffle buffer is seeded per shard, so the order is reproducible (which
    is what lets --resume land on the same data position).
    """

    def __init__(self, tokenizer, files, seq_length, shuffle_buffer=256, seed=0, infinite=True,
                 process_index=0, num_processes=1, words=False):
        self.tokenizer = tokenizer
        self.files = files
        self.seq_length = seq_length
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.infinite = infinite
        self.process_index = process_index
        self.num_processes = num_processes
        from pretrain.mlm import separator_id

        self.eos = separator_id(tokenizer)
        self.words = words  # also yield word-start flags (whole-word masking)

    def _shard(self):
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        return self.process_index * workers + worker, self.num_processes * workers

    def _chunks(self, shard, n_shards):
        buffer: list[int] = []
        while True:  # one pass over the files per epoch
            produced = False
            batch = []
            for i, text in enumerate(iter_contents(self.files)):
                if i % n_shards != shard:
                    continue
                batch.append(text)
                if len(batch) == 32:
                    yield from self._cut(batch, buffer)
                    produced = True
                    batch = []
            if batch:
                yield from self._cut(batch, buffer)
                produced = True
            if not self.infinite or not produced:
                return

    def _cut(self, texts, buffer):
        # The Rust tokenizer directly: batched, and no "longer than the model's maximum" warnings for documents
        # that are about to be cut into chunks anyway.
        from pretrain.mlm import word_starts

        encs = self.tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
        for text, enc in zip(texts, encs):
            if self.words:  # (token, starts a word) pairs
                buffer.extend(zip(enc.ids, word_starts(enc, text)))
                buffer.append((self.eos, True))
            else:
                buffer.extend(enc.ids)
                buffer.append(self.eos)
            while len(buffer) >= self.seq_length:
                if self.words:
                    ids, starts = zip(*buffer[: self.seq_length])
                    yield torch.tensor(ids, dtype=torch.long), torch.tensor(starts, dtype=torch.bool)
                else:
                    yield torch.tensor(buffer[: self.seq_length], dtype=torch.long)
                del buffer[: self.seq_length]

    def __iter__(self):
        shard, n_shards = self._shard()
        rng = random.Random(f"{self.seed}:{shard}")
        pool = []
        for chunk in self._chunks(shard, n_shards):
            if len(pool) < self.shuffle_buffer:
                pool.append(chunk)
                continue
            i = rng.randrange(len(pool))
            pool[i], chunk = chunk, pool[i]
            yield chunk
        rng.shuffle(pool)
        yield from pool


def param_groups(model, weight_decay):
    """AdamW groups: no decay on biases and LayerNorm weights (as in the course)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "ln_" in name or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def keytoken_weighted_loss(logits, input_ids, keytoken_ids, alpha):
    """The course's weighted loss: per-sample token-mean loss, weighted by 1 + alpha * (key tokens in the sample)."""
    shift_logits = logits[..., :-1, :].contiguous()  # (B, T-1, V)
    shift_labels = input_ids[..., 1:].contiguous()  # (B, T-1)
    loss = torch.nn.functional.cross_entropy(shift_logits.view(-1, shift_logits.size(-1)).float(),
                                             shift_labels.view(-1), reduction="none")
    per_sample = loss.view(shift_logits.size(0), -1).mean(dim=1)  # (B,)
    counts = torch.stack([(input_ids == t).sum(dim=1) for t in keytoken_ids]).sum(dim=0)  # (B,)
    weights = 1.0 + alpha * counts.float()
    return (per_sample * weights).sum() / weights.sum()


class MasterWeights:
    """bf16 parameters with fp32 master weights, instead of autocast.

    Autocast keeps fp32 weights and casts each one to bf16 at every use (and every gradient back); here the model
    itself is bf16, so forward and backward run without casts, and the optimizer steps fp32 copies, rounded back
    into the model after each step. Registered for checkpointing (the fp32 copies are what --resume restores), and
    checkpoints are saved from them, in fp32, as before."""

    def __init__(self, model):
        self.names, self.params = zip(*[(n, p) for n, p in model.named_parameters() if p.requires_grad])
        self.master = [p.detach().float().clone().requires_grad_(True) for p in self.params]
        self._index = {id(p): i for i, p in enumerate(self.params)}

    def groups(self, groups: list[dict]) -> list[dict]:
        """Optimizer parameter groups over the model's parameters -> the same groups over the master copies."""
        return [{**g, "params": [self.master[self._index[id(p)]] for p in g["params"]]} for g in groups]

    def take_grads(self) -> None:
        for p, m in zip(self.params, self.master):
            m.grad = None if p.grad is None else p.grad.float()
            p.grad = None

    @torch.no_grad()
    def copy_to_model(self) -> None:
        torch._foreach_copy_(list(self.params), self.master)

    def fp32_state_dict(self, model) -> dict:
        """The model's state dict with the fp32 master values (what save_pretrained writes)."""
        by_storage = {p.data_ptr(): m.detach() for p, m in zip(self.params, self.master)}
        # tied weights (GPT-2's lm_head is wte) map to the one fp32 tensor, so they stay tied in the file
        return {k: by_storage.get(v.data_ptr(), v.float() if v.is_floating_point() else v)
                for k, v in model.state_dict().items()}

    def state_dict(self) -> dict:
        return {"master": [m.detach().clone() for m in self.master]}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            for m, saved in zip(self.master, state["master"]):
                m.copy_(saved)
        self.copy_to_model()


class LinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of `hidden @ weight.T` against `targets`, a block of rows at a time, and its gradient in the
    same pass. Per block: the logits in the compute dtype (bf16 in training), their softmax in fp32 (the loss is minus
    the log of the target's probability), and the gradient with respect to the logits (softmax minus one-hot) kept in
    the compute dtype, so backward is only the two matmuls per block. Neither fp32 logits for the whole batch nor the
    fp32 log-softmax that `cross_entropy(logits.float())` keeps for backward ever exist."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_rows):
        dtype = (torch.get_autocast_dtype(hidden.device.type) if torch.is_autocast_enabled(hidden.device.type)
                 else hidden.dtype)
        h, w = hidden.to(dtype), weight.to(dtype)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grads = []
        for i in range(0, h.size(0), chunk_rows):
            target = targets[i:i + chunk_rows, None]
            z = h[i:i + chunk_rows] @ w.t()
            p = torch.softmax(z, dim=1, dtype=torch.float32)  # one fused pass, faster here than logsumexp or exp
            nll = -torch.log(p.gather(1, target))
            if not torch.isfinite(nll).all():  # a target probability below fp32's range: the exact, slower way
                nll = -torch.log_softmax(z.float(), dim=1).gather(1, target)
            total += nll.sum()
            p.scatter_add_(1, target, torch.full_like(nll, -1.0))  # softmax minus one-hot
            grads.append(p.to(dtype))
        ctx.chunk_rows, ctx.dtypes = chunk_rows, (hidden.dtype, weight.dtype)
        ctx.save_for_backward(h, w, *grads)
        return total / h.size(0)

    @staticmethod
    def backward(ctx, grad_loss):
        h, w, *grads = ctx.saved_tensors
        scale = grad_loss.float() / h.size(0)
        grad_h = torch.empty_like(h)
        grad_w = torch.zeros(w.shape, dtype=torch.float32, device=w.device)
        for j, g in enumerate(grads):
            rows = slice(j * ctx.chunk_rows, (j + 1) * ctx.chunk_rows)
            torch.mm(g, w, out=grad_h[rows])
            grad_w += g.t() @ h[rows]
        hidden_dtype, weight_dtype = ctx.dtypes
        return (grad_h * scale.to(h.dtype)).to(hidden_dtype), (grad_w * scale).to(weight_dtype), None, None


def chunked_causal_lm_loss(model, input_ids, chunk_rows: int = 512, body=None):
    """Next-token cross-entropy of a GPT-2 from its hidden states (LinearCrossEntropy): the same value and gradients
    as `model(input_ids, labels=input_ids).loss` (mean over the B x (T-1) targets), without fp32 logits. `body`: the
    model's transformer as torch.compile returned it (the same parameters), else the model's own."""
    # use_cache=False: GPT-2's config says True, which in training builds a key/value cache at every forward (copies)
    body = model.transformer if body is None else body
    hidden = body(input_ids=input_ids, use_cache=False).last_hidden_state[:, :-1]
    hidden = hidden.reshape(-1, hidden.size(-1))
    targets = input_ids[:, 1:].reshape(-1)
    return LinearCrossEntropy.apply(hidden, model.lm_head.weight, targets, chunk_rows)


def keep_freed_memory() -> bool:
    """Make glibc's malloc reuse the memory of freed tensors up to 32 MiB instead of returning it to the system.

    By default glibc serves each large block (above a threshold that starts at 128 KiB) with a fresh mmap and unmaps it
    on free, so every activation, logits block and gradient of every step is page-faulted in and zeroed by the kernel
    again: on the tiny preset that made a 16 MiB softmax take 8 ms instead of 3. Raising the mmap threshold to its
    maximum (32 MiB on 64-bit) and the trim threshold out of reach keeps those blocks in the heap, where the next step
    reuses them; the cost is that the process keeps its peak heap. This is the problem jemalloc and tcmalloc solve for
    PyTorch on CPUs (Intel's tuning guide preloads them); mallopt does it in-process, with nothing to install. Measured
    on the tiny preset: about 8% off a step. True if applied (Linux with glibc)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from malloc.h
    return bool(mallopt(m_mmap_threshold, 32 * 1024 * 1024)) and bool(mallopt(m_trim_threshold, 2**31 - 1))


def pick_mixed_precision(requested: str) -> str:
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_bf16_is_fast() else "no"


def cpu_bf16_is_fast() -> bool:
    """True where bf16 matmuls clearly beat fp32 (AMX, AVX512-BF16): measured once per machine (pretrain.hardware),
    not read from CPU flags, which virtual machines often hide."""
    if not torch.backends.mkldnn.is_available() or not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return False
    return bf16_speedup() > 1.3


def slow_bf16_warning(requested: str, device: torch.device) -> str | None:
    """One line when bf16 was asked for on a CPU where it is measured slower than fp32 (the run proceeds as asked)."""
    if requested != "bf16" or device.type != "cpu":
        return None
    speedup = bf16_speedup()
    if speedup >= 1.0:
        return None
    cpu = cpu_identity()
    flags = ", ".join(cpu["flags"]) or "none of " + ", ".join(FLAGS)
    return (f"warning: --mixed-precision bf16 on {cpu['model']} (ISA: {flags}): bf16 matmuls measured "
            f"{1 / speedup:.0f}x slower than fp32 here; training in bf16 as asked (--mixed-precision auto picks fp32)")


def flops_per_token(config, n_params: int, seq_length: int) -> float:
    """Training FLOPs per token: 6N for the weights plus 12 * layers * width * context for attention (PaLM, app. B)."""
    layers = next(getattr(config, a) for a in ("n_layer", "n_layers", "num_hidden_layers") if hasattr(config, a))
    width = next(getattr(config, a) for a in ("n_embd", "dim", "hidden_size") if hasattr(config, a))
    return 6 * n_params + 12 * layers * width * seq_length


@torch.no_grad()
def evaluate_mlm(model, accelerator, batches):
    """Masked-LM loss and perplexity on the fixed-mask validation batches (pretrain.mlm), as the harness scores them."""
    from pretrain.mlm import masked_lm_nll

    nll, counts = masked_lm_nll(model, batches, accelerator.device)
    total = accelerator.reduce(torch.tensor([sum(nll), float(sum(counts))], dtype=torch.float64,
                                            device=accelerator.device), "sum")
    loss = (total[0] / total[1].clamp(min=1)).item()
    return loss, math.exp(min(loss, 700.0))


@torch.no_grad()
def evaluate_loss(model, accelerator, dataloader, max_batches):
    """Token-weighted mean loss over the validation chunks; perplexity that cannot overflow."""
    model.eval()
    total_loss = torch.zeros((), dtype=torch.float64, device=accelerator.device)
    total_tokens = torch.zeros((), dtype=torch.float64, device=accelerator.device)
    for i, batch in enumerate(dataloader):
        if i >= max_batches:
            break
        batch = batch.to(accelerator.device)
        loss = model(input_ids=batch, labels=batch, use_cache=False).loss.double()
        n = batch.size(0) * (batch.size(1) - 1)
        total_loss += loss * n
        total_tokens += n
    total_loss = accelerator.reduce(total_loss, "sum")
    total_tokens = accelerator.reduce(total_tokens, "sum")
    model.train()
    loss = (total_loss / total_tokens.clamp(min=1)).item()
    try:
        ppl = math.exp(loss)
    except OverflowError:
        ppl = float("inf")
    return loss, ppl


def train(cfg: TrainConfig) -> dict:
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import AutoModelForCausalLM, AutoTokenizer, get_scheduler

    from common.progress import progress

    from checkpoint_hub import check_repo, open_hub
    from pretrain.models import make_config
    from pretrain.mlm import Masker, ensure_mlm_tokens, fixed_mask_batches

    # ---- config -------------------------------------------------------------------------------
    if cfg.max_steps < 1 or cfg.save_every < 1:
        raise UserError("--max-steps and --save-every must be at least 1")
    if cfg.objective not in ("clm", "mlm"):
        raise UserError(f"--objective must be clm or mlm, got {cfg.objective!r}")
    mlm = cfg.objective == "mlm"
    if cfg.whole_word_masking and not mlm:
        raise UserError("--whole-word-masking is a masked-LM option: add --objective mlm")
    if mlm and cfg.keytoken_alpha > 0:
        raise UserError("--keytoken-alpha weights a causal-LM loss: drop it with --objective mlm")
    if not 0 < cfg.mlm_probability < 1:
        raise UserError(f"--mlm-probability must be between 0 and 1, got {cfg.mlm_probability}")
    if cfg.init is not None and not (Path(cfg.init) / "config.json").exists():
        raise UserError(f"--init {cfg.init}: not a save_pretrained folder (no config.json): point it at a "
                        "checkpoint folder, e.g. one `harness` materialised or `save_pretrained` wrote")
    if cfg.tokenizer is None and cfg.init is None:
        raise UserError("pretrain train needs --tokenizer DIR (or --init DIR, whose tokenizer is then used)")
    out_dir = Path(cfg.output_dir or Path("runs") / cfg.run)
    state_dir = out_dir / "state"
    if cfg.resume and not (state_dir / "trainer_state.json").exists():
        raise UserError(f"--resume: nothing to resume in {state_dir} (no saved state for run {cfg.run!r}): "
                        "drop --resume to start the run, or pass the --output-dir of the run")
    saved_precision = None
    if cfg.resume and cfg.mixed_precision == "auto":
        # "auto" is measured (bf16 where it is fast right now): a resumed run keeps the precision the run started
        # with, or it would not continue exactly
        saved_precision = json.loads((state_dir / "trainer_state.json").read_text()).get("mixed_precision")
    precision = saved_precision or pick_mixed_precision(cfg.mixed_precision)
    # cpu=True without a GPU: under `accelerate launch --multi_gpu --num_processes N` (or torchrun) on a
    # CPU-only machine, Accelerate then sets up MULTI_CPU with gloo instead of N independent runs.
    # FSDP and DeepSpeed shard the parameters and keep their own fp32 masters: there Accelerate's mixed precision runs
    sharded = any(os.environ.get(f"ACCELERATE_USE_{name}", "false").lower() in ("1", "true")
                  for name in ("FSDP", "DEEPSPEED"))
    master_mode = precision == "bf16" and cfg.master_weights and not sharded
    if cfg.reuse_memory and not torch.cuda.is_available():
        keep_freed_memory()
    accelerator = Accelerator(mixed_precision="no" if master_mode else precision,
                              gradient_accumulation_steps=cfg.grad_accum,
                              log_with="tensorboard", project_dir=str(out_dir), cpu=not torch.cuda.is_available())
    warning = slow_bf16_warning(cfg.mixed_precision, accelerator.device)
    if warning:
        accelerator.print(warning)
    set_seed(cfg.seed)
    check_repo(cfg.repo)  # on every rank, so a bad --repo stops all of them, not only the one that pushes

    # ---- data ---------------------------------------------------------------------------------
    tok_dir = cfg.tokenizer or cfg.init
    try:
        tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load a tokenizer from {tok_dir} ({type(exc).__name__}): "
                        "train one with `pretrain tokenizer --corpus DIR --out DIR`")
    added = ensure_mlm_tokens(tokenizer) if mlm else []
    if added:
        accelerator.print(f"the tokenizer has no {' or '.join(added)}: added {', '.join(added)} (saved with every "
                          f"checkpoint) and resized the embeddings to {len(tokenizer)}")
    files = data_files(cfg.corpus)
    if cfg.resume and (state_dir / "config.json").exists():
        # the config the run started with, even if the preset has changed since (a new default activation, say)
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(state_dir)
    else:
        config = make_config(cfg.init or cfg.model, tokenizer, cfg.objective)
    n_positions = getattr(config, "n_positions", None) or config.max_position_embeddings
    seq_length = cfg.seq_length or n_positions
    if seq_length > n_positions:
        raise UserError(f"--seq-length {seq_length} exceeds the model's context ({n_positions})")
    if not files["valid"]:
        raise UserError(f"{cfg.corpus} has no valid shards: rebuild it with `pretrain corpus`")
    probe = ConstantLengthDataset(tokenizer, files["train"], seq_length, shuffle_buffer=1, infinite=False)
    if next(iter(probe), None) is None:
        raise UserError(f"corpus {cfg.corpus} is too small for one sequence of {seq_length} tokens: "
                        "add sources or lower --seq-length")
    hub = open_hub(cfg.repo, create=True) if accelerator.is_main_process else None  # inputs are valid now
    shard = dict(process_index=accelerator.process_index, num_processes=accelerator.num_processes)
    train_ds = ConstantLengthDataset(tokenizer, files["train"], seq_length, cfg.shuffle_buffer, cfg.seed, **shard,
                                     words=mlm and cfg.whole_word_masking)
    valid_ds = ConstantLengthDataset(tokenizer, files["valid"], seq_length, 1, cfg.seed, infinite=False, **shard)
    # A private generator: creating the iterator must not consume the global RNG, or a resumed run's dropout
    # masks would differ from an uninterrupted run's. MLM masks come from the collator's own seeded generator, so
    # they follow the data position and a resumed run masks exactly as an uninterrupted one.
    collate = Masker(tokenizer, cfg.whole_word_masking, cfg.seed, cfg.mlm_probability) if mlm else None
    train_dl = DataLoader(train_ds, batch_size=cfg.batch_size, num_workers=cfg.num_workers, collate_fn=collate,
                          generator=torch.Generator().manual_seed(cfg.seed))
    valid_dl = DataLoader(valid_ds, batch_size=cfg.batch_size, generator=torch.Generator().manual_seed(cfg.seed))
    valid_masked = (fixed_mask_batches(tokenizer, iter_contents(files["valid"]), seq_length, cfg.batch_size,
                                       cfg.eval_batches) if mlm else None)
    if mlm and not valid_masked:
        raise UserError(f"the valid split of {cfg.corpus} is too small for one sequence of {seq_length} tokens: "
                        "rebuild the corpus with a larger --valid-fraction or lower --seq-length")

    # ---- model --------------------------------------------------------------------------------
    from transformers import AutoModelForMaskedLM

    auto = AutoModelForMaskedLM if mlm else AutoModelForCausalLM
    if cfg.init is not None:
        try:
            model = auto.from_pretrained(cfg.init)
        except (OSError, ValueError) as exc:
            raise UserError(f"--init {cfg.init}: cannot load it as a {'masked' if mlm else 'causal'} LM "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
        if len(tokenizer) != model.get_input_embeddings().num_embeddings:
            model.resize_token_embeddings(len(tokenizer))
    else:
        model = auto.from_config(config)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    from pretrain.attention import MAX_LENGTH, use_short_attention

    if (cfg.short_attention and not mlm and precision == "bf16" and accelerator.device.type == "cpu"
            and seq_length <= MAX_LENGTH):
        use_short_attention(model)
    n_params = model.num_parameters()

    # ---- optimizer and schedule ----------------------------------------------------------------
    master = None
    groups = param_groups(model, cfg.weight_decay)
    if master_mode:
        model.to(accelerator.device, torch.bfloat16)  # the fp32 copies live where the model trains
        master = MasterWeights(model)
        groups = master.groups(groups)
    # fused: one kernel for the whole update instead of a Python-level loop over parameter groups
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, fused=True)
    scheduler = get_scheduler(cfg.schedule, optimizer, num_warmup_steps=cfg.warmup_steps,
                              num_training_steps=cfg.max_steps)
    # The dataloaders stay ours: ConstantLengthDataset shards itself across processes and workers.
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    accelerator.register_for_checkpointing(scheduler)
    if master is not None:
        accelerator.register_for_checkpointing(master)
    from transformers import GPT2LMHeadModel

    # the chunked loss calls the model's parts directly, so only where no DDP wrapper needs its own forward
    chunked_loss = (cfg.chunked_loss and not mlm and cfg.keytoken_alpha == 0 and accelerator.num_processes == 1
                    and type(accelerator.unwrap_model(model)) is GPT2LMHeadModel)

    # torch.compile (inductor) of the forward: fuses the layer norms, GELUs, bias and residual adds of forward and
    # backward around the matmuls, which on a CPU are most of what is not a matmul. The compiled module shares the
    # model's parameters and is used for training steps only (validation and checkpoints see the model itself), so
    # state dicts keep their names and eval mode never triggers a second compile.
    forward, body = model, None
    if cfg.compile:
        if chunked_loss:
            body = torch.compile(accelerator.unwrap_model(model).transformer, dynamic=False)
        else:
            forward = torch.compile(model, dynamic=False)

    step, tokens = 0, 0
    if cfg.resume:
        accelerator.load_state(str(state_dir))
        saved = json.loads((state_dir / "trainer_state.json").read_text())
        step, tokens = saved["step"], saved["tokens"]
        accelerator.print(f"resumed run {cfg.run!r} at step {step} ({tokens} tokens)")
    accelerator.init_trackers(cfg.run.replace("/", "_"), config={k: v for k, v in asdict(cfg).items()
                                                                  if isinstance(v, (int, float, str, bool))})

    keytoken_ids = []
    if cfg.keytoken_alpha > 0:
        for t in KEYTOKENS:
            ids = tokenizer(t, add_special_tokens=False)["input_ids"]
            if len(ids) == 1:
                keytoken_ids.append(ids[0])
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    # MFU's denominator: this device's rate on the products the model multiplies (probed once per machine, cached)
    peak_key = (config, cfg.batch_size * seq_length, dtype, accelerator.device, 512 if chunked_loss else None)
    peak = model_peak_flops(*peak_key) * accelerator.num_processes
    fpt = flops_per_token(config, n_params, seq_length)
    tokens_per_step = cfg.batch_size * seq_length * cfg.grad_accum * accelerator.num_processes

    # ---- loop ---------------------------------------------------------------------------------
    batches = iter(train_dl)
    for _ in range(step * cfg.grad_accum):  # back to the data position of the saved step
        next(batches)
    model.train()
    bar = progress(total=cfg.max_steps, initial=step, desc=f"train {cfg.run}", unit="step",
                   disable=not accelerator.is_local_main_process)
    eval_every = cfg.eval_every or cfg.save_every
    history = []
    compile_s = None
    t_last, tokens_last = time.perf_counter(), tokens
    while step < cfg.max_steps:
        running = 0.0
        t_step = time.perf_counter()
        try:
            for _ in range(cfg.grad_accum):
                batch = next(batches)
                if mlm:  # masked inputs; labels -100 except at the masked positions
                    batch = {k: v.to(accelerator.device) for k, v in batch.items()}
                else:
                    batch = batch.to(accelerator.device)  # (B, T)
                with accelerator.accumulate(model):
                    if mlm:  # the loss over the masked positions, in fp32 whatever the model's dtype
                        logits = forward(input_ids=batch["input_ids"]).logits
                        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), batch["labels"].flatten(),
                                                                 ignore_index=-100)
                    elif chunked_loss:
                        with accelerator.autocast():  # a no-op with master weights
                            loss = chunked_causal_lm_loss(model, batch, body=body)
                    elif keytoken_ids:
                        loss = keytoken_weighted_loss(forward(input_ids=batch, use_cache=False).logits, batch, keytoken_ids,
                                                      cfg.keytoken_alpha)
                    else:
                        # Every chunk has exactly seq_length tokens, so the mean over micro-batches (what
                        # accelerator.backward's 1/grad_accum scaling gives) is the true token mean.
                        loss = forward(input_ids=batch, labels=batch, use_cache=False).loss
                    accelerator.backward(loss)
                    if accelerator.sync_gradients:
                        if master is not None:
                            master.take_grads()  # (already reduced across processes) -> fp32, on the master copies
                            torch.nn.utils.clip_grad_norm_(master.master, cfg.max_grad_norm)
                        else:
                            accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    if master is not None and accelerator.sync_gradients:
                        master.copy_to_model()
                running += loss.detach().float().item() / cfg.grad_accum
        except torch._dynamo.exc.TorchDynamoException as exc:  # only a compiled forward raises these
            raise UserError(f"--compile: torch.compile failed here ({type(exc).__name__}: "
                            f"{str(exc).strip().splitlines()[0][:160]}): drop --compile") from exc
        if cfg.compile and not history:
            compile_s = time.perf_counter() - t_step
            accelerator.print(f"torch.compile: the first step took {compile_s:.1f} s (compiling; later steps reuse it)")
        step += 1
        tokens += tokens_per_step
        train_loss = accelerator.reduce(torch.tensor(running, device=accelerator.device), "mean").item()

        now = time.perf_counter()
        tok_s = (tokens - tokens_last) / max(now - t_last, 1e-9)
        mfu = tok_s * fpt / peak
        t_last, tokens_last = now, tokens
        bar.update(1)
        bar.set_postfix(loss=f"{train_loss:.3f}", tok_s=f"{tok_s:,.0f}", mfu=f"{100 * mfu:.1f}%", refresh=False)
        logs = {"train/loss": train_loss, "train/lr": scheduler.get_last_lr()[0], "perf/tokens_per_s": tok_s,
                "perf/mfu": mfu}

        is_save = step % cfg.save_every == 0 or step == cfg.max_steps
        valid = None
        if step % eval_every == 0 or is_save:
            if mlm:
                valid_loss, ppl = evaluate_mlm(model, accelerator, valid_masked)
            else:
                valid_loss, ppl = evaluate_loss(model, accelerator, valid_dl, cfg.eval_batches)
            valid = {"valid_loss": valid_loss, "valid_perplexity": ppl}
            logs.update({"valid/loss": valid_loss, "valid/perplexity": ppl})
            accelerator.print(f"step {step}: train loss {train_loss:.4f}, valid loss {valid_loss:.4f}, "
                              f"perplexity {ppl:.2f}, {tok_s:,.0f} tokens/s, MFU {100 * mfu:.1f}%")
        accelerator.log(logs, step=step)
        history.append({"step": step, "tokens": tokens, "train_loss": train_loss, "time": now, "mfu": mfu,
                        **(valid or {})})
        if is_save:
            state = TrainingState(step=step, run=cfg.run, tokens=tokens, train_loss=train_loss, **valid,
                                  n_params=n_params, seq_length=seq_length, mixed_precision=precision,
                                  corpus=str(Path(cfg.corpus).resolve()), world_size=accelerator.num_processes,
                                  objective=cfg.objective, whole_word_masking=cfg.whole_word_masking if mlm else None,
                                  init=str(Path(cfg.init).resolve()) if cfg.init else None,
                                  decontaminated=corpus_decontaminated(cfg.corpus))
            save_checkpoint(accelerator, model, tokenizer, hub, cfg, state, state_dir, master)
    bar.close()
    if history and max(h["mfu"] for h in history) > 1.0:  # the cached peak was probed on a busy machine
        forget_model_peak(*peak_key)
    accelerator.end_training()
    return {"steps": step, "tokens": tokens, "history": history, "n_params": n_params, "precision": precision,
            "is_main": accelerator.is_main_process, "compile_s": compile_s}


def corpus_decontaminated(corpus) -> list[str] | None:
    """The suites the corpus was decontaminated against, from its stats.json (None: built before decontamination)."""
    try:
        stats = json.loads((Path(corpus) / "stats.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    d = stats.get("decontamination")
    return list(d.get("suites", [])) if isinstance(d, dict) else None


def as_float32(config: dict) -> dict:
    """A model config dict that says float32: what the saved weights are (the fp32 masters, not the bf16 model)."""
    return {**config, **{k: "float32" for k in ("torch_dtype", "dtype") if k in config}}


def save_checkpoint(accelerator, model, tokenizer, hub, cfg, state: TrainingState, state_dir, master=None):
    """A save_pretrained folder + training_state.json as one commit `step N` on branch `run`; then the
    accelerator state (model, optimizer, scheduler, RNG) for --resume, written beside it, then renamed in."""
    accelerator.wait_for_everyone()
    commit = None
    if accelerator.is_main_process:
        folder = state_dir.parent / f".checkpoint-{state.step}"
        shutil.rmtree(folder, ignore_errors=True)
        core = accelerator.unwrap_model(model)
        if master is not None:  # fp32, from the master weights (the bf16 model is their rounding)
            core.save_pretrained(folder, safe_serialization=True, state_dict=master.fp32_state_dict(core))
            cfg_path = folder / "config.json"
            atomic.write_json(cfg_path, as_float32(json.loads(cfg_path.read_text())))
        else:
            core.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
        atomic.write_json(folder / TRAINING_STATE, state.to_json())
        commit = hub.push(cfg.run, folder, f"step {state.step}")
        shutil.rmtree(folder, ignore_errors=True)
    tmp = state_dir.with_name(state_dir.name + ".tmp")
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        # what --resume rebuilds the model from
        atomic.write_json(tmp / "config.json", as_float32(accelerator.unwrap_model(model).config.to_dict()))
        atomic.write_json(tmp / "trainer_state.json", {**state.to_json(), "commit": commit})
        shutil.rmtree(state_dir, ignore_errors=True)
        tmp.rename(state_dir)
        accelerator.print(f"checkpoint step {state.step} -> {cfg.repo} branch {cfg.run} commit {commit[:10]}")
    accelerator.wait_for_everyone()
