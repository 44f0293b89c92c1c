"""The LightningModule and DataModule for completion-only supervised fine-tuning.

The loss is the shifted cross-entropy over the labels built in ``scaling.data.sft``: answer
tokens and EOS only (prompt and padding are -100), averaged over those tokens. By default
(``finetune.logits_at: targets``) the output projection runs only at the positions whose next
token carries loss (:func:`target_loss`); ``all`` lets the model compute logits everywhere and
its own loss, the same number.
"""

from __future__ import annotations

import logging
import math
import resource
import time
from dataclasses import replace
from typing import Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from scaling.data.sft import IGNORE_INDEX, LengthGroupedBatchSampler, SFTCollator, SFTDataset
from scaling.optim import OptimConfig  # noqa: F401 - re-exported: its home was here

log = logging.getLogger("scaling.train")


def causal_inputs(batch: dict) -> dict:
    """``batch``'s model inputs, with the attention mask left out when every row is padded on
    the right only (what :class:`~scaling.data.sft.SFTCollator` builds).

    Under causal attention a token never sees the positions after it, so right padding cannot
    reach a real token: the mask changes only the pads' own outputs, which carry no loss.
    Without it, attention takes its ``is_causal`` path, which skips the blocks above the
    diagonal; with a padding mask, PyTorch's CPU flash kernel computes every block and masks
    it (twice the work, and attention is half of a long complex-tier example's training step)."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    mask = inputs.get("attention_mask")
    if mask is not None and bool((mask[:, 1:] <= mask[:, :-1]).all()) and bool(mask[:, 0].all()):
        inputs.pop("attention_mask")
    return inputs


def target_loss(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, int]:
    """The mean next-token cross-entropy over the tokens that carry loss, with the output
    projection applied only at the positions that predict them.

    The model runs without labels; a forward pre-hook on its output projection
    (``get_output_embeddings()``: transformers' models, our MiniModel port, peft-wrapped
    models) hands the projection only the hidden states of those positions, so the logits
    are ``[n_targets, vocab]`` instead of ``[batch, length, vocab]``. The loss is the one the
    model computes itself (shifted labels, -100 ignored, mean over the rest, in fp32): the
    same tokens, the same average. Returns ``(loss, n_targets)``."""
    labels = batch["labels"]
    wanted = torch.zeros_like(labels, dtype=torch.bool)
    wanted[:, :-1] = labels[:, 1:] != IGNORE_INDEX  # position t predicts token t + 1
    targets = labels[:, 1:][wanted[:, :-1]]
    head = model.get_output_embeddings()
    if head is None:
        raise ValueError(f"finetune.logits_at=targets: {type(model).__name__} has no output projection "
                         "(get_output_embeddings() is None); use finetune.logits_at=all")

    def keep_targets(_module, args):
        hidden = args[0]
        if hidden.shape[:2] != wanted.shape:  # a model that already sliced its hidden states
            raise ValueError(f"finetune.logits_at=targets: the output projection of {type(model).__name__} got "
                             f"hidden states of shape {tuple(hidden.shape)}, not one per position "
                             f"{tuple(wanted.shape)}; use finetune.logits_at=all")
        return (hidden[wanted], *args[1:])

    handle = head.register_forward_pre_hook(keep_targets)
    try:
        out = model(**causal_inputs(batch), use_cache=False)
    finally:
        handle.remove()
    logits = out.logits if hasattr(out, "logits") else out[0]
    return F.cross_entropy(logits.float(), targets), int(targets.numel())


def lr_lambda(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """Multiplier of the peak lr at optimiser step ``step`` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class ResumableDataLoader(DataLoader):
    """A DataLoader whose position in the epoch is saved in Lightning checkpoints.

    Lightning stores ``state_dict()`` of loaders that have one; on resume the batch sampler
    skips the batches already trained on, so a killed job continues with the same data order.
    """

    def state_dict(self) -> dict:
        return resume_state(self.batch_sampler)

    def load_state_dict(self, state: dict) -> None:
        self.batch_sampler.load_state_dict(state)


def resume_state(sampler) -> dict:
    """The batch sampler's position as a checkpoint stores it: a checkpoint taken at an
    epoch's last batch resumes at the start of the next epoch.

    Stored as "epoch e, every batch done", Lightning (2.6) counts that epoch twice on resume:
    its loop moves to epoch e + 1 (the last batch completed), but the train iterator, created
    from the loader state before that, is empty, and the empty pass is counted as epoch e + 1,
    so training goes on at e + 2 (one epoch never trained, in a different data order).
    """
    state = sampler.state_dict()
    if state["batches_done"] >= len(sampler):
        state = {**state, "epoch": state["epoch"] + 1, "batches_done": 0}
    return state


class SFTDataModule(L.LightningDataModule):
    """Length-grouped, dynamically padded batches over tokenised SFT examples."""

    def __init__(self, train: SFTDataset, val: SFTDataset | None, pad_token_id: int, batch_size: int,
                 max_batch_tokens: int | None, seed: int, num_workers: int = 0,
                 extra_passes: Sequence[Sequence[int]] = ()) -> None:
        super().__init__()
        self.train_set, self.val_set = train, val
        self.extra_passes = extra_passes  # see LengthGroupedBatchSampler.extra_passes
        self.collate = SFTCollator(pad_token_id)
        self.batch_size, self.max_batch_tokens = batch_size, max_batch_tokens
        self.seed, self.num_workers = seed, num_workers
        self.train_sampler: LengthGroupedBatchSampler | None = None

    def train_dataloader(self) -> DataLoader:
        world, rank = 1, 0
        if self.trainer is not None:
            world, rank = self.trainer.world_size, self.trainer.global_rank
        self.train_sampler = LengthGroupedBatchSampler(
            self.train_set.lengths, self.batch_size, seed=self.seed, max_tokens=self.max_batch_tokens,
            num_replicas=world, rank=rank, extra_passes=self.extra_passes,
        )
        return ResumableDataLoader(self.train_set, batch_sampler=self.train_sampler, collate_fn=self.collate,
                                   num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader | list:
        if not self.val_set or len(self.val_set) == 0:
            return []
        sampler = LengthGroupedBatchSampler(self.val_set.lengths, self.batch_size, seed=self.seed,
                                            max_tokens=self.max_batch_tokens, shuffle=False)
        return DataLoader(self.val_set, batch_sampler=sampler, collate_fn=self.collate, num_workers=self.num_workers)


class SFTModule(L.LightningModule):
    """Fine-tunes a causal LM on completion tokens; logs loss, lr and measured throughput."""

    def __init__(self, model: torch.nn.Module, optim: OptimConfig, gradient_checkpointing: bool = False,
                 name: str = "", logits_at: str = "targets") -> None:
        super().__init__()
        self.model = model
        self.model.train()  # from_pretrained returns eval mode; dropout (if any) must be on
        self.optim = optim
        self.logits_at = logits_at  # FinetuneConfig.logits_at
        if gradient_checkpointing:
            # Recompute activations in backward: ~30% slower, but long complex-tier examples
            # (2,000+ tokens) fit in memory at useful batch sizes.
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            if hasattr(self.model, "enable_input_require_grads"):
                self.model.enable_input_require_grads()
        self.name = name  # prefixes the log lines: parallel jobs write to one terminal
        self.tokens_seen = 0  # non-pad tokens (prompt + answer) on this rank
        self.target_tokens_seen = 0  # tokens that carry loss
        self.train_time_s = 0.0
        self._t_batch = 0.0
        self._sampler_state: dict | None = None  # from a checkpoint, applied in on_train_start

    def forward(self, **batch):
        return self.model(**batch)

    def _train_sampler(self):
        dm = self.trainer.datamodule
        return getattr(dm, "train_sampler", None) if dm is not None else None

    def on_train_start(self) -> None:
        sampler = self._train_sampler()
        if sampler is not None and self._sampler_state is not None:
            # Resuming: skip the batches the checkpoint had trained on. Done here, not through the
            # loader's state_dict, because Lightning drops loader states when configure_optimizers
            # reads estimated_stepping_batches (Lightning issue #20550); and not at epoch start,
            # which a mid-epoch resume does not run. The sampler's iterator reads the skip lazily,
            # at its first batch; Lightning's set_epoch clears it if a new epoch begins instead.
            sampler.load_state_dict(self._sampler_state)
        self._sampler_state = None

    def on_train_epoch_start(self) -> None:
        sampler = self._train_sampler()
        if sampler is not None:
            sampler.set_epoch(self.current_epoch)

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        self._t_batch = time.perf_counter()
        sampler = self._train_sampler()
        if sampler is not None:
            # Counted when drawn: checkpoint callbacks run before this module's
            # on_train_batch_end, so counting there would make a resume repeat one batch.
            sampler.batches_done = batch_idx + 1

    def loss(self, batch: dict) -> torch.Tensor:
        """The training loss of ``batch`` (see :func:`target_loss` and ``finetune.logits_at``)."""
        if self.logits_at == "targets":
            return target_loss(self.model, batch)[0]
        return self.model(**causal_inputs(batch), labels=batch["labels"], use_cache=False).loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        n_tok = int(batch["attention_mask"].sum())
        n_tgt = int((batch["labels"] != -100).sum())
        self.tokens_seen += n_tok
        self.target_tokens_seen += n_tgt
        bs = batch["input_ids"].shape[0]
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=bs)
        self.log("train/tokens", float(self.tokens_seen), on_step=True, on_epoch=False, batch_size=bs)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.train_time_s += time.perf_counter() - self._t_batch
        if self.train_time_s > 0:
            self.log("train/tokens_per_s", self.tokens_seen / self.train_time_s, prog_bar=True, on_step=True,
                     on_epoch=False, batch_size=1)
        opt = self.optimizers()
        lr = None
        if opt is not None and not isinstance(opt, list):
            lr = opt.param_groups[0]["lr"]
            self.log("train/lr", lr, on_step=True, on_epoch=False, batch_size=1)
        every = max(1, int(getattr(self.trainer, "log_every_n_steps", 50) or 50))
        if self.trainer.is_global_zero and (batch_idx + 1) % every == 0:
            # Plain log lines: progress stays visible in SLURM logs and redirected output,
            # where the progress bar is not drawn.
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            log.info("%sstep %d (epoch %d, batch %d/%s): loss %.4f, lr %.2e, %d tokens, %.1f tokens/s",
                     f"{self.name} " if self.name else "", self.global_step, self.current_epoch, batch_idx + 1, self.trainer.num_training_batches,
                     float(loss), lr or 0.0, self.tokens_seen,
                     self.tokens_seen / self.train_time_s if self.train_time_s else 0.0)

    def validation_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        n_tgt = int((batch["labels"] != -100).sum())
        self.log("val/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=n_tgt)
        return loss

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Clip as ``trainer.gradient_clip_val`` says. Lightning refuses to clip for an optimiser
        that unscales gradients in its own step (fused AdamW) under any mixed precision, also
        bf16, which has no gradient scaler and nothing to unscale: then the norm is clipped here,
        as Lightning would. With fp16's scaler, Lightning's own rule applies."""
        scaler = getattr(self.trainer.precision_plugin, "scaler", None) if self._trainer is not None else None
        if gradient_clip_val and getattr(optimizer, "_step_supports_amp_scaling", False) and scaler is None:
            if gradient_clip_algorithm not in (None, "norm"):
                raise ValueError(f"trainer.gradient_clip_algorithm={gradient_clip_algorithm!r} with a fused optimiser: "
                                 "only norm clipping is supported; set finetune.optim.fused=false")
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]],
                                           float(gradient_clip_val))
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            (decay if p.ndim >= 2 and "emb" not in name.lower() else no_decay).append(p)
        groups = [{"params": decay, "weight_decay": self.optim.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        optim = self.optim
        if optim.fused is None and self._trainer is not None and str(self.trainer.precision).startswith("16"):
            optim = replace(optim, fused=False)  # fp16's gradient scaler and Lightning's clipping: unfused
        opt = make_adamw(groups, optim)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(round(self.optim.warmup_ratio * total))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_lambda(s, total, warmup, self.optim.min_lr_ratio)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["scaling_counters"] = {"tokens_seen": self.tokens_seen,
                                          "target_tokens_seen": self.target_tokens_seen,
                                          "train_time_s": self.train_time_s}
        sampler = self._train_sampler() if self._trainer is not None else None
        if sampler is not None:
            checkpoint["scaling_sampler"] = resume_state(sampler)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._sampler_state = checkpoint.get("scaling_sampler")
        counters = checkpoint.get("scaling_counters", {})
        self.tokens_seen = int(counters.get("tokens_seen", 0))
        self.target_tokens_seen = int(counters.get("target_tokens_seen", 0))
        self.train_time_s = float(counters.get("train_time_s", 0.0))


def make_adamw(groups: list[dict], optim: OptimConfig) -> torch.optim.AdamW:
    """AdamW over ``groups`` as ``optim`` says, fused where torch has the kernel (see
    :attr:`OptimConfig.fused`)."""
    params = [p for g in groups for p in g["params"]]
    fused = optim.fused
    if fused is None:
        fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(groups, lr=optim.lr, betas=optim.betas, eps=optim.eps, fused=True if fused else None)


def peak_memory_mb(device: torch.device | None = None) -> float:
    """Peak memory of this process: CUDA allocator peak on GPU, max RSS on CPU."""
    if device is not None and device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
