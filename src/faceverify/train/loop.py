"""The training loop: classify identities, keep the penultimate layer as the embedding.

One code path for every set-up: precision is an autocast dtype plus a gradient scaler
that is a no-op unless fp16 is used; distribution is a ``DistributedSampler`` that is a
plain shuffle in a world of one, and DDP wrapping only when torchrun started several
processes. Every epoch is seeded from (seed, epoch, rank), so an interrupted run resumed
from its checkpoint continues exactly as if it had never stopped.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from faceverify.distributed import Distributed, start
from faceverify.errors import ConfigError, MetricsError
from faceverify.models.checkpoint import load_checkpoint
from faceverify.train.calibrate import (
    Calibrator,
    calibration_metrics,
    calibration_pairs,
    held_out_identities,
)
from faceverify.train.checkpoint import restore_rng, save_checkpoint
from faceverify.train.config import TrainConfig
from faceverify.train.data import IdentityFolder, collate
from faceverify.train.early_stop import EarlyStop
from faceverify.train.heads import CenterLoss, ClassifierHead, auto_scale, margin_at
from faceverify.train.logbook import Logbook
from faceverify.train.setup import (
    build_network,
    contract_for_data,
    make_optimizers,
    precision,
    train_transform,
    use_channels_last,
)

if TYPE_CHECKING:
    from faceverify.compare.calibration import Calibration
    from faceverify.models.factory import LoadedNetwork
    from faceverify.runtime.torch_backend import EmbeddingModel

log = logging.getLogger(__name__)


class TrainNet(nn.Module):
    """Embedder, classifier head and center loss as one module, so DDP syncs them all."""

    def __init__(self, embedder: nn.Module, head: ClassifierHead, center: CenterLoss | None) -> None:
        super().__init__()
        self.embedder, self.head, self.center = embedder, head, center

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        embeddings = self.embedder(x)
        logits, plain = self.head(embeddings, labels)
        center = self.center(embeddings, labels) if self.center is not None else None
        return logits, plain, center


def train(config: TrainConfig, *, resume: str | Path | None = None) -> dict[str, Any]:
    """Run (or resume) a training run; returns the last epoch's metrics."""
    world = start(config.device)
    try:
        return Trainer(config, world, resume).fit()
    finally:
        world.close()


class Trainer:
    def __init__(self, config: TrainConfig, world: Distributed, resume: str | Path | None) -> None:
        held_out = held_out_identities(config)  # the same on every rank: seeded
        config = replace(config, calibrate=replace(config.calibrate, holdout_identities=held_out))
        self.config, self.world = config, world
        self.out = Path(config.out)
        _seed(config.seed, 0, world.rank)
        self.model, contract, self.architecture = build_network(config)
        root = Path(config.data.root)
        self.contract = contract_for_data(contract, root)
        self.train_set = IdentityFolder(
            root / config.data.train_dir, train_transform(config, self.contract), exclude=held_out
        )
        self.classes = self.train_set.classes
        self.val_set = (
            IdentityFolder(root / config.data.val_dir, self.contract, classes=self.classes, exclude=held_out)
            if config.data.val_dir and world.main
            else None
        )
        self.pairs = calibration_pairs(config, held_out) if world.main else None
        self.calibrator = Calibrator(
            config.calibrate.far,
            self.pairs.description if self.pairs else "",
            self.architecture,
            self.contract,
        )
        self.calibration: Calibration | None = None  # that of the network as last validated
        dim = self.model.num_features
        head = ClassifierHead(
            config.loss.head,
            dim,
            len(self.classes),
            scale=auto_scale(len(self.classes)) if config.loss.scale is None else config.loss.scale,
            margin=config.loss.margin,
        )
        center = CenterLoss(len(self.classes), dim) if config.loss.center_weight > 0 else None
        self.net = TrainNet(self.model, head, center).to(world.torch_device)
        self.channels_last = use_channels_last(config.channels_last, self.net, world.torch_device)
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.optimizer, self.center_optimizer, self.scheduler = make_optimizers(config, self.net)
        self.autocast_dtype, scaled = precision(config.precision, world.torch_device)
        self.scaler = torch.amp.GradScaler(world.torch_device.type, enabled=scaled)
        self.sampler: DistributedSampler[Any] = DistributedSampler(
            self.train_set, num_replicas=world.world_size, rank=world.rank, shuffle=True, seed=config.seed
        )
        self.loader = DataLoader(
            self.train_set,
            batch_size=config.batch_size,
            sampler=self.sampler,
            num_workers=config.data.workers,
            pin_memory=config.data.pin_memory and world.torch_device.type == "cuda",
            collate_fn=collate,
            drop_last=len(self.train_set)
            > config.batch_size * world.world_size,  # BatchNorm dislikes a batch of 1
            persistent_workers=config.data.workers > 0,
        )
        self.runner: nn.Module = self.net
        if config.compile:
            self.runner = torch.compile(self.runner)  # type: ignore[assignment]
        if world.active:
            ids = [world.torch_device.index] if world.torch_device.type == "cuda" else None
            self.runner = nn.parallel.DistributedDataParallel(self.runner, device_ids=ids)
        self.start_epoch, self.best = 0, -float("inf")
        self.early_stop = EarlyStop(config.early_stop)
        self.resumed: dict[str, Any] = {}
        if config.early_stop.patience and world.main and self.val_set is None and self.pairs is None:
            log.warning("early_stop.patience is set but there is no validation data: it never stops")
        if resume is not None:
            self._resume(Path(resume))
        self.logbook = Logbook(self.out, config, after_epoch=self.start_epoch - 1) if world.main else None

    def fit(self) -> dict[str, Any]:
        metrics: dict[str, Any] = dict(self.resumed)
        for epoch in range(self.start_epoch, self.config.epochs):
            _seed(self.config.seed, epoch, self.world.rank)
            self.sampler.set_epoch(epoch)
            metrics = {"epoch": epoch, **self._train_epoch(epoch), **self._validate()}
            metrics = self.world.broadcast(metrics)
            self._step_schedule(metrics)
            # every rank judges rank 0's broadcast metrics: all stop in the same epoch
            stop = self.early_stop.update(epoch, metrics)
            if stop is not None:
                metrics["stopped_early"] = stop
            if self.world.main:
                self._save(epoch, metrics)
            self.world.barrier()
            if stop is not None:
                log.info("early stop after epoch %d of %d: %s", epoch + 1, self.config.epochs, stop)
                break
        if self.logbook is not None:
            self.logbook.close()
            self._report_calibration()
        return metrics

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        self.net.train()
        config, device = self.config, self.world.torch_device
        total_loss = correct = seen = skipped = 0.0
        started = time.perf_counter()
        bar = _progress(
            self.world.main, len(self.loader) * config.batch_size, f"epoch {epoch + 1}/{config.epochs}"
        )
        for batch, (images, labels, bad) in enumerate(self.loader):
            skipped += bad
            if labels.numel() == 0:
                continue
            self._warm_margin(epoch + batch / max(len(self.loader), 1))
            images = images.to(device, non_blocking=True)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            labels = labels.to(device, non_blocking=True)
            loss, plain = self._step(images, labels)
            total_loss += loss * labels.numel()
            correct += float((plain.argmax(dim=1) == labels).sum())
            seen += labels.numel()
            bar.update(labels.numel())
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
        bar.close()
        seconds = time.perf_counter() - started
        seen_all = self.world.mean(seen) * self.world.world_size
        return {
            "train_loss": self.world.mean(total_loss / max(seen, 1)),
            "train_acc": self.world.mean(correct / max(seen, 1)),
            "images_per_s": seen_all / seconds,
            "seconds": seconds,
            "skipped_images": int(self.world.mean(skipped) * self.world.world_size),
            "lr": self.optimizer.param_groups[0]["lr"],
            **({"margin": self.net.head.margin} if self.net.head.kind != "softmax" else {}),
        }

    def _warm_margin(self, progress: float) -> None:
        head = self.net.head
        head.margin = margin_at(head.target_margin, progress, self.config.loss.margin_warmup_epochs)

    def _step(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, torch.Tensor]:
        config = self.config
        with torch.autocast(
            self.world.torch_device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None
        ):
            logits, plain, center = self.runner(images, labels)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=config.loss.label_smoothing)
        total = loss if center is None else loss + config.loss.center_weight * center
        self.optimizer.zero_grad(set_to_none=True)
        if self.center_optimizer is not None:
            self.center_optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if config.optim.clip_grad:
            self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            nn.utils.clip_grad_norm_(params, config.optim.clip_grad)
        self.scaler.step(self.optimizer)
        if self.center_optimizer is not None and self.net.center is not None:
            # centres move at their own rate whatever λ is: undo λ in their gradient
            self.scaler.unscale_(self.center_optimizer)
            grad = self.net.center.centers.grad
            if grad is not None:
                grad.div_(config.loss.center_weight)
            self.scaler.step(self.center_optimizer)
        self.scaler.update()
        return float(loss.detach()), plain.detach()

    @torch.inference_mode()
    def _validate(self) -> dict[str, Any]:
        if not self.world.main:
            return {}
        self.net.eval()
        result: dict[str, Any] = {}
        if self.val_set is not None:
            result["val_acc"] = self._val_accuracy()
        if self.pairs is not None:
            result.update(self._val_verification())
        self.net.train()
        return result

    def _val_accuracy(self) -> float:
        assert self.val_set is not None
        loader = DataLoader(self.val_set, batch_size=self.config.batch_size, collate_fn=collate)
        correct = seen = 0
        for images, labels, _ in loader:
            if labels.numel() == 0:
                continue
            _, plain = self.net.head(
                self.model(images.to(self.world.torch_device)), labels.to(self.world.torch_device)
            )
            correct += int((plain.argmax(dim=1).cpu() == labels).sum())
            seen += labels.numel()
        return correct / max(seen, 1)

    def _val_verification(self) -> dict[str, Any]:
        """Verification AUC on the calibration pairs, and the threshold chosen on them."""
        from faceverify.compare.roc import roc_auc, roc_curve
        from faceverify.models.factory import LoadedNetwork

        network = LoadedNetwork(self.model, self.architecture, self.contract, source="training", file=None)
        probe = chip_embedder(network, channels_last=self.config.channels_last)
        assert self.pairs is not None
        scores, labels = self.pairs.score(probe, batch_size=self.config.batch_size)
        self.calibration = self.calibrator.choose(scores, labels)
        try:
            auc = {"val_auc": roc_auc(roc_curve(scores, labels))}
        except MetricsError as exc:
            log.warning("validation AUC unavailable: %s", exc)
            auc = {}
        return {**auc, **calibration_metrics(self.calibration)}

    def _report_calibration(self) -> None:
        """Say what threshold each checkpoint carries: the one verify will use."""
        from faceverify.compare.calibration import Calibration

        for name in ("best.pt", "last.pt"):
            path = self.out / name
            entry = load_checkpoint(path).get("calibration") if path.is_file() else None
            if entry is None:
                log.warning("%s carries no calibrated threshold: run faceverify calibrate on it", path)
            else:
                log.info("%s carries %s", path, Calibration(**entry).describe())

    def _step_schedule(self, metrics: dict[str, Any]) -> None:
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(metrics.get("val_auc", metrics.get("val_acc", -metrics["train_loss"])))
        elif self.scheduler is not None:
            self.scheduler.step()

    def _save(self, epoch: int, metrics: dict[str, Any]) -> None:
        assert self.logbook is not None
        score = metrics.get("val_auc", metrics.get("val_acc", metrics["train_acc"]))
        improved = score > self.best
        self.best = max(self.best, score)
        state = self._state(epoch, metrics)
        save_checkpoint(self.out / "last.pt", state)
        if improved:
            save_checkpoint(self.out / "best.pt", state)
        self.logbook.write(metrics)  # after the checkpoint: a logged epoch can always be resumed
        log.info("epoch %d: %s%s", epoch + 1, _fmt(metrics), " (best)" if improved else "")

    def _state(self, epoch: int, metrics: dict[str, Any]) -> dict[str, Any]:
        neck = not isinstance(self.model.neck, nn.Identity)
        return {
            "architecture": self.architecture,
            "model_args": dict(self.config.model.args),
            "embedding_dim": self.model.num_features,
            "neck": neck,
            "preprocess": self.contract.to_dict(),
            "class_names": self.classes,
            "head": self.config.loss.head,
            "calibration": self.calibration.to_dict() if self.calibration else None,
            "epoch": epoch,
            "metrics": metrics,
            "best": self.best,
            "early_stop": self.early_stop.state_dict(),
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "center_optimizer": self.center_optimizer.state_dict() if self.center_optimizer else None,
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "scaler": self.scaler.state_dict(),
        }

    def _resume(self, path: Path) -> None:
        state = load_checkpoint(path)
        mine = {
            "architecture": self.architecture,
            "model_args": dict(self.config.model.args),
            "embedding_dim": self.model.num_features,
            "class_names": self.classes,
            "head": self.config.loss.head,
        }
        differs = [k for k, v in mine.items() if state.get(k) != v]
        if differs:
            raise ConfigError(
                f"cannot resume from '{path}': its {', '.join(differs)} differ from this config; "
                "resume with the run's own config (config.yaml in its folder)"
            )
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.center_optimizer is not None and state["center_optimizer"] is not None:
            self.center_optimizer.load_state_dict(state["center_optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        restore_rng(state["rng"])
        self.start_epoch, self.best = int(state["epoch"]) + 1, float(state["best"])
        self.early_stop.load_state_dict(state.get("early_stop"))
        self.resumed = dict(state["metrics"])
        if "stopped_early" in self.resumed:
            # the run is finished, not interrupted: training on would only repeat the verdict
            log.info("'%s' had stopped early (%s); nothing to resume", path, self.resumed["stopped_early"])
            self.start_epoch = self.config.epochs
            return
        log.info("resumed from %s at epoch %d", path, self.start_epoch + 1)


def chip_embedder(network: LoadedNetwork, *, channels_last: bool = True) -> EmbeddingModel:
    """An embedder that takes images as training does: already cut out, never searched for faces.

    Training images of a face network (dlib's) are aligned chips (``faceverify prepare``
    makes them), so validation pairs are scored without face detection, whatever the
    contract's face template says; the template still travels with the checkpoint, so the
    trained model detects and aligns real photos like the network it started from.
    """
    from faceverify.runtime.build import embedder_for

    chips = replace(network, contract=replace(network.contract, face_template=None))
    return embedder_for(chips, channels_last=channels_last)


def _seed(seed: int, epoch: int, rank: int) -> None:
    value = seed * 1_000_003 + epoch * 1009 + rank
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)


def _progress(show: bool, total: int, desc: str) -> Any:
    import sys

    from tqdm.auto import tqdm

    return tqdm(total=total, unit="img", desc=desc, disable=not (show and sys.stderr.isatty()), leave=False)


def _fmt(metrics: dict[str, Any]) -> str:
    keys = ("train_loss", "train_acc", "val_acc", "val_auc", "threshold", "images_per_s")
    return ", ".join(f"{k} {metrics[k]:.4g}" for k in keys if k in metrics)
