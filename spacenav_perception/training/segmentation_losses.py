"""Region terms added to the class-weighted cross-entropy of the segmentation task.

- ``dice``: soft Dice over the batch, averaged over the classes (every hazard model up to
  session 11 was trained with it).
- ``lovasz``: the Lovasz-softmax surrogate of the Jaccard loss (Berman, Rannen Triki and
  Blaschko, CVPR 2018): for each class present in the batch, the pixels' errors
  ``|[label == c] - p_c|`` sorted from largest to smallest, weighted by the increments of the
  Jaccard loss along that order; its minimum is the per-class IoU optimum, so it pulls the
  outline of a rare class (small rocks) rather than its pixel count.

Both take logits (N, C, H, W) and integer targets (N, H, W) and return a scalar.
"""
import torch
import torch.nn.functional as F

REGION_LOSSES = ('dice', 'lovasz')
DEFAULT_REGION_LOSS = 'dice'


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    prob = logits.softmax(1)
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).float()
    inter = (prob * onehot).sum((0, 2, 3))
    denom = prob.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    return 1.0 - ((2 * inter + eps) / (denom + eps)).mean()


def jaccard_increments(fg_sorted: torch.Tensor) -> torch.Tensor:
    """Increments of the Jaccard loss 1 - |A & B| / |A | B| when the pixels, in the given
    order, are counted wrong one after the other (fg_sorted: 1 where the pixel is the class)."""
    total = fg_sorted.sum()
    intersection = total - fg_sorted.cumsum(0)
    union = total + (1.0 - fg_sorted).cumsum(0)
    loss = 1.0 - intersection / union
    return torch.cat([loss[:1], loss[1:] - loss[:-1]])


def lovasz_softmax_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the classes present in the batch of the Lovasz extension of their Jaccard
    loss, computed over all the batch's pixels together."""
    n_classes = logits.shape[1]
    prob = logits.softmax(1).permute(0, 2, 3, 1).reshape(-1, n_classes)
    labels = target.reshape(-1)
    terms = []
    for c in range(n_classes):
        fg = (labels == c).to(prob.dtype)
        if not bool(fg.any()):
            continue
        errors = (fg - prob[:, c]).abs()
        errors_sorted, order = torch.sort(errors, descending=True)
        terms.append(torch.dot(errors_sorted, jaccard_increments(fg[order])))
    if not terms:
        return logits.sum() * 0.0
    return torch.stack(terms).mean()


def region_loss(name: str):
    """The region term called ``name`` (one of REGION_LOSSES)."""
    if name == 'dice':
        return dice_loss
    if name == 'lovasz':
        return lovasz_softmax_loss
    raise ValueError(f'unknown region loss {name!r} (known: {", ".join(REGION_LOSSES)})')
