"""Region terms of the segmentation loss: Dice and the Lovasz-softmax IoU surrogate."""
import json

import numpy as np
import pytest
import torch

from spacenav_perception.cli import main as cli_main
from spacenav_perception.training.segmentation_losses import (
    DEFAULT_REGION_LOSS, REGION_LOSSES, dice_loss, jaccard_increments, lovasz_softmax_loss,
    region_loss)
from spacenav_perception.training.segmentation_task import (SegmentationTask, confusion,
                                                            scores)

from fake_datasets import make_lunar_set


def test_jaccard_increments_follow_the_set_definition():
    # counting the first i pixels of the order wrong costs |S_i| / |fg | S_i| (Berman et al.)
    rng = np.random.default_rng(3)
    fg = (rng.random(40) < 0.3).astype(np.float64)
    fg[0] = 1.0
    losses = []
    truth = set(np.flatnonzero(fg))
    for i in range(1, len(fg) + 1):
        wrong = set(range(i))
        losses.append(len(wrong) / len(truth | wrong))
    expected = np.diff(np.concatenate([[0.0], losses]))
    got = jaccard_increments(torch.from_numpy(fg)).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_lovasz_of_a_hard_prediction_is_one_minus_the_iou():
    # on a one-hot prediction the Lovasz extension is exact: the mean over the classes present
    # in the target of 1 - IoU (classes absent from the target are left out)
    rng = np.random.default_rng(5)
    target = torch.from_numpy(rng.integers(0, 3, (2, 12, 16)))          # class 3 absent
    pred = target.clone()
    flip = torch.from_numpy(rng.random((2, 12, 16)) < 0.25)
    pred[flip] = torch.from_numpy(rng.integers(0, 4, int(flip.sum())))
    logits = torch.nn.functional.one_hot(pred, 4).permute(0, 3, 1, 2).double() * 60.0
    iou = scores(confusion(pred, target, 4))['iou']
    present = [v for name, v in iou.items() if name != 'sky']
    expected = float(np.mean([1.0 - v for v in present]))
    assert float(lovasz_softmax_loss(logits, target)) == pytest.approx(expected, abs=1e-9)
    assert float(lovasz_softmax_loss(
        torch.nn.functional.one_hot(target, 4).permute(0, 3, 1, 2).double() * 60.0,
        target)) == pytest.approx(0.0, abs=1e-9)


def test_lovasz_gradient_moves_the_outline_toward_the_label():
    torch.manual_seed(0)
    target = torch.zeros(1, 16, 16, dtype=torch.long)
    target[0, 4:9, 5:10] = 1
    logits = torch.randn(1, 2, 16, 16, requires_grad=True)
    opt = torch.optim.SGD([logits], lr=50.0)
    first = None
    for _ in range(30):
        loss = lovasz_softmax_loss(logits, target)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5 * first
    pred = logits.argmax(1)
    assert scores(confusion(pred, target, 2))['miou'] > 0.95


def test_region_loss_names():
    assert region_loss('dice') is dice_loss and region_loss('lovasz') is lovasz_softmax_loss
    with pytest.raises(ValueError, match='unknown region loss'):
        region_loss('focal')


def test_train_cli_region_losses_match_the_module():
    from spacenav_perception.commands import train
    assert train.REGION_LOSSES == REGION_LOSSES
    assert train.DEFAULT_REGION_LOSS == DEFAULT_REGION_LOSS


def test_train_segmentation_with_lovasz_records_the_loss(tmp_path, capsys):
    data = make_lunar_set(tmp_path / 'data', n=3)
    out = tmp_path / 'run'
    assert cli_main(['train', 'segmentation', '--arch', 'hazardnet', '--data', str(data),
                     '--val', str(data), '--out', str(out), '--epochs', '1', '--batch-size', '3',
                     '--threads', '1', '--input-hw', '32', '64', '--region-loss', 'lovasz']) == 0
    config = json.loads((out / 'config.json').read_text())
    assert config['loss'] == 'class-weighted cross-entropy + lovasz'
    assert '--region-loss lovasz' in config['command']
    # the term the task adds is the Lovasz one
    task = SegmentationTask(data, data, 'hazardnet', input_hw=(32, 64), region_loss_name='lovasz')
    task.datasets()
    batch = {'target': torch.zeros(1, 4, 4, dtype=torch.long)}
    logits = torch.zeros(1, 4, 4, 4)
    total, parts = task.loss(logits, batch)
    assert set(parts) == {'ce', 'lovasz'}
    assert parts['lovasz'] == pytest.approx(float(lovasz_softmax_loss(logits, batch['target'])))
    # the report U-Net keeps its recipe: a clear refusal, nothing trained
    capsys.readouterr()
    assert cli_main(['train', 'segmentation', '--arch', 'unet', '--data', str(data), '--val',
                     str(data), '--out', str(tmp_path / 'unet'), '--region-loss', 'lovasz']) == 2
    assert 'cross-entropy alone' in capsys.readouterr().err
    assert not (tmp_path / 'unet').exists()
    with pytest.raises(ValueError, match='cross-entropy alone'):
        SegmentationTask(data, data, 'unet', region_loss_name='lovasz')
