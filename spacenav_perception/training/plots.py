"""Figures written during training and evaluation (matplotlib, Agg backend)."""
from pathlib import Path

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..core.lunar_classes import PALETTE as CLASS_COLOURS  # noqa: E402  (class id -> RGB)


def plot_history(history, out_dir, task_name: str) -> None:
    """loss.png (train/val loss per epoch) and, for segmentation, iou.png."""
    out_dir = Path(out_dir)
    epochs = [h['epoch'] for h in history]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(epochs, [h['train_loss'] for h in history], 'o-', color='tab:orange', label='train loss')
    if any('val_loss' in h for h in history):
        ax.plot(epochs, [h.get('val_loss', np.nan) for h in history], 'o-', color='tab:red',
                label='validation loss')
    ax.set_xlabel('epoch')
    ax.set_ylabel('loss')
    ax.set_yscale('log')
    ax.grid(alpha=0.3)
    ax.legend()
    if task_name == 'centroid' and any('val_median_px' in h for h in history):
        ax2 = ax.twinx()
        ax2.plot(epochs, [h.get('val_median_px', np.nan) for h in history], 's--',
                 color='tab:blue', label='val median error [px]')
        ax2.set_ylabel('validation median error [full-res px]')
        ax2.legend(loc='upper center')
    fig.tight_layout()
    fig.savefig(out_dir / 'loss.png', dpi=100)
    plt.close(fig)
    if task_name == 'segmentation':
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.plot(epochs, [h.get('val_miou', np.nan) for h in history], 'o-', lw=2, label='mIoU')
        names = sorted({k for h in history for k in h if k.startswith('val_iou_')})
        for k in names:
            ax.plot(epochs, [h.get(k, np.nan) for h in history], '.--', label=k[len('val_iou_'):])
        ax.set_xlabel('epoch')
        ax.set_ylabel('validation IoU')
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out_dir / 'iou.png', dpi=100)
        plt.close(fig)


def centroid_overlay(images, pred_xy, true_xy, path, titles=None) -> None:
    """Grid of mono images with the prediction (red) and the truth (green), as in the thesis.
    Coordinates are in the displayed image's pixels; NaN entries are not drawn."""
    n = len(images)
    cols = min(4, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis('off')
        if i >= n:
            continue
        ax.imshow(images[i], cmap='gray', vmin=0, vmax=1)
        if true_xy is not None and np.all(np.isfinite(true_xy[i])):
            ax.plot(true_xy[i][0], true_xy[i][1], 'g+', ms=12, mew=2)
        if pred_xy is not None and np.all(np.isfinite(pred_xy[i])):
            ax.plot(pred_xy[i][0], pred_xy[i][1], 'rx', ms=10, mew=2)
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    fig.suptitle('prediction red x, truth green +', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def colourise(classes: np.ndarray) -> np.ndarray:
    return CLASS_COLOURS[np.clip(classes, 0, len(CLASS_COLOURS) - 1)]


def segmentation_overlay(images, truth, pred, path, alpha: float = 0.45) -> None:
    """Rows of [image | truth overlay | prediction overlay]; images (H, W, 3) float in [0, 1]."""
    n = len(images)
    fig, axes = plt.subplots(n, 3, figsize=(10, 2.3 * n), squeeze=False)
    for i in range(n):
        img = np.clip(images[i], 0, 1)
        for j, (title, cls) in enumerate((('image', None), ('truth', truth[i] if truth is not None else None),
                                          ('prediction', pred[i]))):
            ax = axes[i, j]
            ax.axis('off')
            if cls is None:
                ax.imshow(img)
            else:
                ax.imshow((1 - alpha) * img + alpha * colourise(cls) / 255.0)
            if i == 0:
                ax.set_title(title, fontsize=9)
    fig.suptitle('ground black, small rock green, large rock blue, sky red', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def confusion_matrix_plot(cm: np.ndarray, class_names, path) -> None:
    cm = np.asarray(cm, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.5, 4.8))
    im = ax.imshow(norm, cmap='Blues', vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=30)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel('predicted')
    ax.set_ylabel('true')
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            ax.text(j, i, f'{norm[i, j]:.3f}', ha='center', va='center',
                    color='white' if norm[i, j] > 0.5 else 'black', fontsize=8)
    fig.colorbar(im, ax=ax, label='fraction of true-class pixels')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def centroid_error_plot(errors_by_method: dict, path, phase=None) -> None:
    """Histogram of the error of each method, and error vs phase angle when known."""
    ncols = 2 if phase is not None else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6 * ncols, 4.2), squeeze=False)
    ax = axes[0, 0]
    finite = [e[np.isfinite(e)] for e in errors_by_method.values()]
    hi = max([np.percentile(e, 99) for e in finite if len(e)] + [1.0])
    bins = np.logspace(-2, np.log10(max(hi, 0.1) * 1.2), 40)
    for (name, e), f in zip(errors_by_method.items(), finite):
        ax.hist(f, bins=bins, histtype='step', lw=2, label=f'{name} (median {np.median(f):.2f})'
                if len(f) else name)
    ax.set_xscale('log')
    ax.set_xlabel('centroid error [full-resolution px]')
    ax.set_ylabel('frames')
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if phase is not None:
        ax = axes[0, 1]
        for name, e in errors_by_method.items():
            ok = np.isfinite(e)
            ax.scatter(np.asarray(phase)[ok], e[ok], s=6, alpha=0.6, label=name)
        ax.set_yscale('log')
        ax.set_xlabel('phase angle [deg]')
        ax.set_ylabel('error [px]')
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
