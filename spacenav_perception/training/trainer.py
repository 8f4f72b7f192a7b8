"""One training loop for every task (centroid regression, segmentation).

A *task* object supplies the pieces that differ between problems:

    task.name                     'centroid' | 'segmentation'
    task.arch                     architecture name (recorded in config.json)
    task.build_model() -> nn.Module
    task.datasets() -> (train_dataset, val_dataset)   items are dicts of tensors
    task.loss(outputs, batch) -> (loss, {name: float})
    task.val_begin(); task.val_step(outputs, batch); task.val_end() -> {name: float}
    task.metric_name, task.metric_mode ('min' | 'max')  -> picks best.pt
    task.save_overlay(outputs, batch, path)           one validation figure
    task.config() -> dict                             input spec, output convention, ...
    task.optimizer(model, args) -> (optimizer, scheduler_or_None)

The loop is deliberately plain (in the spirit of the torchvision reference scripts): fixed seeds,
a tqdm bar, optional AMP on CUDA, DistributedDataParallel when started by ``torchrun``
(gloo on CPU, nccl on CUDA, DistributedSampler; only rank 0 validates and writes files).
Checkpoints are plain state dicts (``torch.load(path, weights_only=True)`` reads them) with
``config.json`` beside them.
"""
import json
import math
import os
import random
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from . import plots


@dataclass
class TrainConfig:
    out: str
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    device: str = 'auto'
    workers: int = 0
    resume: bool = False
    amp: bool = False
    overlay_every: int = 5
    max_steps_per_epoch: int = 0     # 0: the whole epoch (tests use small values)
    threads: int = 0                 # torch CPU threads, 0: torch default
    init: str = ''                   # start from these weights (a checkpoint's model state)
    keep_epochs: bool = False        # also write OUT/epochN.pt (1-based) after every epoch
    command: str = ''
    extra: dict = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    if device == 'auto':
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if device == 'cuda':
        if not torch.cuda.is_available():
            print('warning: --device cuda requested but CUDA is not available; using CPU',
                  file=sys.stderr)
            return torch.device('cpu')
        return torch.device('cuda', local_rank)
    return torch.device(device)


def setup_distributed(device: str):
    """(rank, world_size, local_rank); initialises the process group under torchrun."""
    world = int(os.environ.get('WORLD_SIZE', '1'))
    if world <= 1:
        return 0, 1, 0
    rank = int(os.environ['RANK'])
    local_rank = int(os.environ.get('LOCAL_RANK', rank))
    use_cuda = device in ('auto', 'cuda') and torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group('nccl' if use_cuda else 'gloo', rank=rank, world_size=world)
    if use_cuda:
        torch.cuda.set_device(local_rank)
    return rank, world, local_rank


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v)
            for k, v in batch.items()}


def save_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + '.tmp')
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    os.replace(tmp, path)


def save_checkpoint(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(path.suffix + '.tmp')
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path) -> dict:
    return torch.load(path, map_location='cpu', weights_only=True)


def checkpoint_weights(ck: dict) -> dict:
    """The model's state dict from a loaded checkpoint: this trainer's files keep it under
    'model' (beside optimizer, epoch, config); a bare state dict is accepted as it is."""
    return ck['model'] if 'model' in ck else ck


def adamw_one_cycle(model, cfg, n_train: int, final_div_factor: float):
    """AdamW with a one-cycle schedule (10 % warm-up, cosine decay) stepped once per batch:
    the default recipe of both tasks' default networks."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = max(1, n_train // max(1, cfg.batch_size))
    if cfg.max_steps_per_epoch:
        steps = min(steps, cfg.max_steps_per_epoch)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=steps * cfg.epochs + 1, pct_start=0.1,
        anneal_strategy='cos', div_factor=20, final_div_factor=final_div_factor)
    return opt, sched


class IncompatibleCheckpoint(ValueError):
    """--init names a checkpoint none of whose tensors fit the model."""


def load_init_state(path, task_name: str) -> dict:
    """The tensors `--init` warm-starts from: a training checkpoint (RUNDIR/best.pt, last.pt)
    or a shipped TorchScript model (models/NAME.ts), which must pass its manifest's checks
    (sha256, task) first: fine-tuning the shipped model on new data needs no run folder."""
    path = Path(path)
    if path.suffix != '.ts':
        return checkpoint_weights(load_checkpoint(path))
    from ..core.manifest import ModelIntegrityError, load_manifest
    try:
        manifest = load_manifest(path, expected_task=task_name)
    except ModelIntegrityError as exc:
        raise IncompatibleCheckpoint(f'--init: {exc}') from None
    tta = (manifest.extra.get('export') or {}).get('test_time_augmentation', 'none')
    if tta not in (None, 'none'):
        raise IncompatibleCheckpoint(f'--init: {path} was exported with test-time augmentation '
                                     f'{tta!r}; warm-start from a plain export or a checkpoint')
    return {k: v.detach().clone() for k, v in torch.jit.load(str(path), map_location='cpu')
            .state_dict().items()}


def load_init_weights(model, state: dict):
    """Warm start: copy every tensor of `state` whose name and shape match the model's.
    Returns (n_loaded, names the checkpoint lacks, checkpoint names not used); raises
    IncompatibleCheckpoint when nothing matches (the wrong task's checkpoint, say)."""
    own = model.state_dict()
    use = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not use:
        raise IncompatibleCheckpoint('--init: no tensor of the checkpoint matches this model '
                         '(a checkpoint of another architecture or task?)')
    model.load_state_dict(use, strict=False)
    fresh = sorted(k for k in own if k not in use)
    skipped = sorted(k for k in state if k not in use)
    return len(use), fresh, skipped


def _unwrap(model):
    return model.module if hasattr(model, 'module') else model


class Trainer:
    def __init__(self, task, cfg: TrainConfig):
        self.task = task
        self.cfg = cfg
        self.rank, self.world, self.local_rank = setup_distributed(cfg.device)
        self.device = resolve_device(cfg.device, self.local_rank)
        self.is_main = self.rank == 0
        self.out = Path(cfg.out)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)

    # -- helpers --------------------------------------------------------------------------
    def _log(self, msg: str) -> None:
        if self.is_main:
            tqdm.write(msg)
            with open(self.out / 'train.log', 'a') as f:
                f.write(msg + '\n')

    def _config_dict(self, seconds: float, metrics: dict) -> dict:
        c = dict(self.task.config())
        c.update({
            'task': self.task.name, 'arch': self.task.arch,
            'epochs': self.cfg.epochs, 'batch_size': self.cfg.batch_size, 'lr': self.cfg.lr,
            'weight_decay': self.cfg.weight_decay, 'seed': self.cfg.seed,
            'world_size': self.world, 'device': self._device_desc(),
            'command': self.cfg.command, 'seconds': round(seconds, 1), 'metrics': metrics,
            'init': self.cfg.init or None,
        })
        c.update(self.cfg.extra)
        return c

    def _device_desc(self) -> str:
        if self.device.type == 'cuda':
            return f'cuda:{torch.cuda.get_device_name(self.device)} x{self.world}'
        return f'cpu ({torch.get_num_threads()} threads) x{self.world} process(es)'

    # -- main loop ------------------------------------------------------------------------
    def fit(self) -> dict:
        cfg, task = self.cfg, self.task
        seed_everything(cfg.seed)   # same seed on every rank -> identical initial weights
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / 'overlays').mkdir(exist_ok=True)
        train_ds, val_ds = task.datasets()
        model = task.build_model()
        if cfg.init:
            loaded, fresh, skipped = load_init_weights(model, load_init_state(cfg.init, task.name))
            self._log(f'initialised {loaded} tensors from {cfg.init}'
                      + (f'; new (not in the checkpoint): {", ".join(fresh)}' if fresh else '')
                      + (f'; not used (name or shape differs): {", ".join(skipped)}'
                         if skipped else ''))
        model = model.to(self.device)
        optimizer, scheduler = task.optimizer(model, cfg)

        start_epoch, best, history, seconds_before = 0, None, [], 0.0
        last_path, best_path = self.out / 'last.pt', self.out / 'best.pt'
        if cfg.resume and last_path.exists():
            ck = load_checkpoint(last_path)
            model.load_state_dict(ck['model'])
            optimizer.load_state_dict(ck['optimizer'])
            start_epoch = int(ck['epoch']) + 1
            if scheduler is not None:
                if 'scheduler' in ck and int(ck.get('epochs', -1)) == cfg.epochs:
                    scheduler.load_state_dict(ck['scheduler'])
                else:   # a new epoch count: replay the new schedule up to where we are
                    with warnings.catch_warnings():
                        warnings.simplefilter('ignore')
                        for _ in range(start_epoch * int(ck.get('steps_per_epoch', 0))):
                            scheduler.step()
            best = ck.get('best')
            history = json.loads(ck.get('history', '[]'))
            seconds_before = float(ck.get('seconds', 0.0))
            self._log(f'resumed from {last_path} at epoch {start_epoch}')

        if self.world > 1:
            model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[self.local_rank] if self.device.type == 'cuda' else None)
        sampler = DistributedSampler(train_ds, num_replicas=self.world, rank=self.rank,
                                     shuffle=True, seed=cfg.seed, drop_last=True) \
            if self.world > 1 else None
        g = torch.Generator()
        g.manual_seed(cfg.seed)
        per_rank_batch = max(1, cfg.batch_size // self.world)
        loader = DataLoader(train_ds, batch_size=per_rank_batch, shuffle=sampler is None,
                            sampler=sampler, num_workers=cfg.workers, drop_last=True,
                            generator=g, pin_memory=self.device.type == 'cuda',
                            persistent_workers=cfg.workers > 0,
                            worker_init_fn=_worker_init)
        val_loader = DataLoader(val_ds, batch_size=per_rank_batch, shuffle=False,
                                num_workers=cfg.workers)
        use_amp = cfg.amp and self.device.type == 'cuda'
        scaler = torch.amp.GradScaler('cuda', enabled=use_amp)
        better = (lambda a, b: a < b) if task.metric_mode == 'min' else (lambda a, b: a > b)

        t_start = time.time()
        for epoch in range(start_epoch, cfg.epochs):
            if sampler is not None:
                sampler.set_epoch(epoch)
            if hasattr(train_ds, 'set_epoch'):
                train_ds.set_epoch(epoch)
            model.train()
            n_steps = len(loader)
            if cfg.max_steps_per_epoch:
                n_steps = min(n_steps, cfg.max_steps_per_epoch)
            bar = tqdm(total=n_steps, desc=f'epoch {epoch + 1}/{cfg.epochs}',
                       disable=not self.is_main, leave=False, dynamic_ncols=True)
            run_loss, n_seen = 0.0, 0
            for step, batch in enumerate(loader):
                if step >= n_steps:
                    break
                batch = to_device(batch, self.device)
                with torch.autocast(self.device.type, enabled=use_amp):
                    outputs = model(batch['image'])
                loss, _ = task.loss(outputs.float(), batch)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                if scheduler is not None:
                    scheduler.step()
                run_loss += float(loss.detach())
                n_seen += 1
                bar.set_postfix(loss=f'{run_loss / n_seen:.4f}')
                bar.update(1)
            bar.close()
            train_loss = run_loss / max(1, n_seen)

            record = {'epoch': epoch + 1, 'train_loss': train_loss}
            if self.is_main:
                record.update(self._validate(_unwrap(model), val_loader, epoch))
            metric = record.get(task.metric_name)
            is_best = self.is_main and metric is not None and math.isfinite(metric) and \
                (best is None or better(metric, best))
            if is_best:
                best = metric
            history.append(record)
            seconds = seconds_before + time.time() - t_start
            if self.is_main:
                state = {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()}
                ck = {'model': state, 'optimizer': optimizer.state_dict(), 'epoch': epoch,
                      'epochs': cfg.epochs, 'steps_per_epoch': n_seen,
                      'best': best, 'history': json.dumps(history), 'seconds': seconds,
                      'config': json.dumps(self._config_dict(seconds, record))}
                if scheduler is not None:
                    ck['scheduler'] = scheduler.state_dict()
                save_checkpoint(last_path, ck)
                if is_best:
                    save_checkpoint(best_path, {'model': state, 'epoch': epoch, 'best': best,
                                                'config': ck['config']})
                if cfg.keep_epochs:
                    save_checkpoint(self.out / f'epoch{epoch + 1}.pt',
                                    {'model': state, 'epoch': epoch, 'best': best,
                                     'config': ck['config']})
                    save_json(self.out / 'best_metrics.json', record)
                save_json(self.out / 'history.json', history)
                save_json(self.out / 'config.json',
                          self._config_dict(seconds, self._best_record(history)))
                plots.plot_history(history, self.out, task.name)
                self._log(' '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}'
                                   for k, v in record.items()) +
                          (' *best*' if is_best else '') + f' [{seconds:.0f}s]')
            if self.world > 1:
                dist.barrier()
        if self.world > 1:
            dist.barrier()
        self.model = _unwrap(model)
        return {'best': best, 'history': history}

    def _best_record(self, history):
        vals = [h for h in history if h.get(self.task.metric_name) is not None]
        if not vals:
            return history[-1] if history else {}
        key = lambda h: h[self.task.metric_name]
        return min(vals, key=key) if self.task.metric_mode == 'min' else max(vals, key=key)

    @torch.no_grad()
    def _validate(self, model, loader, epoch: int) -> dict:
        model.eval()
        self.task.val_begin()
        run_loss, n = 0.0, 0
        first = None
        for batch in loader:
            batch = to_device(batch, self.device)
            outputs = model(batch['image']).float()
            loss, _ = self.task.loss(outputs, batch)
            run_loss += float(loss)
            n += 1
            self.task.val_step(outputs, batch)
            if first is None:
                first = (outputs.cpu(), {k: (v.cpu() if torch.is_tensor(v) else v)
                                         for k, v in batch.items()})
        metrics = self.task.val_end()
        metrics['val_loss'] = run_loss / max(1, n)
        every = max(1, self.cfg.overlay_every)
        if first is not None and ((epoch + 1) % every == 0 or epoch + 1 == self.cfg.epochs
                                  or epoch == 0):
            self.task.save_overlay(first[0], first[1],
                                   self.out / 'overlays' / f'val_epoch_{epoch + 1:03d}.png')
        return metrics


def _worker_init(worker_id: int) -> None:
    seed = torch.initial_seed() % 2 ** 32
    np.random.seed(seed)
    random.seed(seed)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
