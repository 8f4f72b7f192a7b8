"""The shared trainer: files it writes, resume, both tasks, and DDP (two gloo processes)."""
import json
import math
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from spacenav_perception.training.centroid_task import CentroidTask, shape_kl
from spacenav_perception.training.segmentation_task import SegmentationTask
from spacenav_perception.training.trainer import (TrainConfig, Trainer, load_checkpoint,
                                                  load_init_weights)

from fake_datasets import make_asteroid_set, make_lunar_set


def test_centroid_training_writes_run_folder_and_resumes(tmp_path):
    tr = make_asteroid_set(tmp_path / 'tr', n=8, size=64, seed=1)
    va = make_asteroid_set(tmp_path / 'va', n=4, size=64, seed=2)
    out = tmp_path / 'run'
    task = CentroidTask(tr, va, 'centroidnet', input_size=64)
    cfg = TrainConfig(out=str(out), epochs=2, batch_size=4, lr=1e-3, overlay_every=1, threads=1)
    result = Trainer(task, cfg).fit()
    assert len(result['history']) == 2
    for name in ('last.pt', 'best.pt', 'config.json', 'history.json', 'loss.png', 'train.log'):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / 'overlays').iterdir()) == ['val_epoch_001.png',
                                                                    'val_epoch_002.png']
    ck = load_checkpoint(out / 'best.pt')          # weights_only=True
    assert set(ck['model']) == set(task.build_model().state_dict())
    config = json.loads((out / 'config.json').read_text())
    assert config['task'] == 'centroid' and config['arch'] == 'centroidnet'
    assert config['output'] == 'xy_norm_logit' and config['input']['height'] == 64
    assert 'val_median_px' in result['history'][-1]
    # resume continues at epoch 3
    cfg2 = TrainConfig(out=str(out), epochs=3, batch_size=4, lr=1e-3, resume=True, threads=1)
    result2 = Trainer(CentroidTask(tr, va, 'centroidnet', input_size=64), cfg2).fit()
    assert [h['epoch'] for h in result2['history']] == [1, 2, 3]


def test_thesis_recipe_labels_are_input_pixels(tmp_path):
    tr = make_asteroid_set(tmp_path / 'tr', n=4, size=256, seed=3)
    task = CentroidTask(tr, tr, 'thesis')
    train_ds, _ = task.datasets()
    item = train_ds[0]
    assert item['image'].shape == (1, 128, 128)
    x_full = float(item['uv'][0]) * 256 - 0.5
    assert float(item['target'][0]) == pytest.approx(x_full * 128 / 256, abs=1e-4)
    opt, sched = task.optimizer(task.build_model(), TrainConfig(out='x', lr=1e-4))
    assert isinstance(opt, torch.optim.Adam) and sched is None
    assert opt.param_groups[0]['lr'] == 1e-4


def test_shape_kl_is_zero_at_the_silhouette_and_skips_cut_bodies():
    sil = torch.zeros(2, 1, 32, 32)
    sil[:, :, 8:20, 10:24] = 1.0
    t = torch.nn.functional.adaptive_avg_pool2d(sil, [8, 8]).reshape(2, 64)
    exact = torch.log((t / t.sum(1, keepdim=True)).clamp_min(1e-30))
    uniform = torch.full((2, 64), -math.log(64))
    use = torch.ones(2)
    assert float(shape_kl(exact, sil, use)) == pytest.approx(0.0, abs=1e-5)
    assert float(shape_kl(uniform, sil, use)) > 0.5
    assert float(shape_kl(uniform, sil, torch.zeros(2))) == 0.0      # not used
    cut = sil.clone()
    cut[:, :, :, 0] = 1.0                                           # touches the frame edge
    assert float(shape_kl(uniform, cut, use)) == 0.0


def test_centroid_augmentation_moves_the_silhouette_with_the_image(tmp_path):
    tr = make_asteroid_set(tmp_path / 'tr', n=6, size=64, seed=4)
    task = CentroidTask(tr, tr, 'centroidnet', input_size=64, p_empty=0.0)
    train_ds, _ = task.datasets()
    assert train_ds.n_silhouettes == 6
    moved = 0
    for epoch in range(3):
        train_ds.set_epoch(epoch)
        for i in range(len(train_ds)):
            item = train_ds[i]
            img, sil = item['image'][0], item['silhouette'][0]
            assert float(item['has_silhouette']) == 1.0
            lit = img > 0.2                         # the lit half of the disc
            assert lit.any() and not (lit & (sil < 0.01)).any()
            # the label (disc centre) stays the silhouette's centre
            ys, xs = torch.nonzero(sil > 0.5, as_tuple=True)
            u, v = (float(a) * 64 - 0.5 for a in item['uv'])
            assert abs(xs.float().mean() - u) < 1.0 and abs(ys.float().mean() - v) < 1.0
            moved += int(not torch.equal(sil, torch.from_numpy(train_ds.sils[i] / 255.0).float()))
    assert moved > 0
    model = task.build_model()
    assert model.with_map
    out = model(item['image'][None])
    assert out.shape == (1, 3 + 16 * 16)


def test_init_weights_copy_what_matches_and_refuse_a_foreign_checkpoint():
    src, dst = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)), \
        nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 5))
    n, fresh, skipped = load_init_weights(dst, src.state_dict())
    assert n == 2 and fresh == ['1.bias', '1.weight'] and skipped == ['1.bias', '1.weight']
    assert torch.equal(dst[0].weight, src[0].weight)
    with pytest.raises(ValueError, match='no tensor'):
        load_init_weights(nn.Conv2d(1, 1, 3), src.state_dict())


def test_segmentation_training_writes_iou_curve(tmp_path):
    tr = make_lunar_set(tmp_path / 'tr', n=4)
    out = tmp_path / 'run'
    task = SegmentationTask(tr, tr, 'hazardnet', input_hw=(32, 64), crop_hw=(32, 32))
    train_ds, val_ds = task.datasets()
    assert train_ds[0]['image'].shape == (3, 32, 32) and train_ds[0]['target'].shape == (32, 32)
    assert val_ds[0]['image'].shape == (3, 32, 64)        # validation sees whole frames
    result = Trainer(task, TrainConfig(out=str(out), epochs=1, batch_size=2, threads=1)).fit()
    assert (out / 'iou.png').is_file() and (out / 'best.pt').is_file()
    rec = result['history'][-1]
    assert 0.0 <= rec['val_miou'] <= 1.0
    assert {'val_iou_ground', 'val_iou_small_rock', 'val_iou_large_rock', 'val_iou_sky'} <= set(rec)


# -- DDP ---------------------------------------------------------------------------------------
class _ToyTask:
    """Linear regression on fixed random tensors: enough to exercise DDP gradient averaging."""
    name = 'centroid'
    arch = 'toy'
    metric_name = 'val_loss'
    metric_mode = 'min'

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x = torch.rand(32, 1, 4, 4, generator=g)
        self.y = torch.rand(32, 3, generator=g)

    def build_model(self):
        return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))

    def datasets(self):
        ds = [{'image': self.x[i], 'target': self.y[i]} for i in range(len(self.x))]
        return ds, ds[:8]

    def optimizer(self, model, cfg):
        return torch.optim.SGD(model.parameters(), lr=cfg.lr), None

    def loss(self, outputs, batch):
        loss = nn.functional.mse_loss(outputs, batch['target'])
        return loss, {}

    def val_begin(self):
        pass

    def val_step(self, outputs, batch):
        pass

    def val_end(self):
        return {}

    def save_overlay(self, outputs, batch, path):
        Path(path).write_bytes(b'')

    def config(self):
        return {'input': {'height': 4, 'width': 4, 'channels': 1}, 'output': 'xy_norm_logit'}


def _ddp_worker(rank, world, port, out_dir):
    os.environ.update({'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': str(port), 'RANK': str(rank),
                       'WORLD_SIZE': str(world), 'LOCAL_RANK': str(rank)})
    torch.set_num_threads(1)
    from spacenav_perception.training.trainer import cleanup_distributed
    trainer = Trainer(_ToyTask(), TrainConfig(out=str(Path(out_dir) / 'run'), epochs=2,
                                              batch_size=8, lr=0.1, seed=5, device='cpu'))
    trainer.fit()
    torch.save(trainer.model.state_dict(), Path(out_dir) / f'rank{rank}.pt')
    cleanup_distributed()


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.timeout(120)
def test_ddp_two_gloo_processes_keep_identical_weights(tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    a = torch.load(tmp_path / 'rank0.pt', weights_only=True)
    b = torch.load(tmp_path / 'rank1.pt', weights_only=True)
    init = _ToyTask().build_model()
    torch.manual_seed(5)
    init = _ToyTask().build_model().state_dict()
    moved = False
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=0, rtol=0)
        moved |= not torch.equal(a[k], init[k])
    assert moved, 'the weights did not change: no optimisation step ran'
    # only rank 0 wrote the run folder
    run = tmp_path / 'run'
    assert (run / 'last.pt').is_file() and (run / 'history.json').is_file()
    hist = json.loads((run / 'history.json').read_text())
    assert [h['epoch'] for h in hist] == [1, 2]


def test_train_on_an_unusable_dataset_is_one_clear_error(tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    (tmp_path / 'images').mkdir()
    (tmp_path / 'labels.csv').write_text('image_name,x_coordinate,y_coordinate\nnone.png,1,2\n')
    result = subprocess.run([str(Path(sys.executable).parent / 'spacenav'), 'train', 'centroid',
                             '--data', str(tmp_path), '--val', str(tmp_path), '--epochs', '1',
                             '--out', str(tmp_path / 'run')], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert 'missing_image' in result.stdout + result.stderr      # the problem is named
    assert 'no usable images' in result.stderr and 'Traceback' not in result.stderr


def test_train_init_from_a_missing_or_foreign_checkpoint_is_one_clear_error(tmp_path):
    import subprocess
    import sys
    tr = make_asteroid_set(tmp_path / 'tr', n=4, size=64, seed=1)
    torch.save({'model': {'not.a.layer': torch.zeros(3)}}, tmp_path / 'foreign.pt')
    exe = str(Path(sys.executable).parent / 'spacenav')
    for init, words in ((tmp_path / 'nothing.pt', 'no such checkpoint'),
                        (tmp_path / 'foreign.pt', 'no tensor of the checkpoint matches')):
        result = subprocess.run([exe, 'train', 'centroid', '--data', str(tr), '--val', str(tr),
                                 '--epochs', '1', '--input-size', '64', '--init', str(init),
                                 '--out', str(tmp_path / 'run')],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, result.stderr
        assert words in result.stderr and 'Traceback' not in result.stderr


def test_wide_photometric_augmentation_varies_exposure_and_keeps_labels(tmp_path):
    """'wide' draws exposures from a third to about three times nominal (so a
    mid-grey frame can saturate), plus blur and offsets; 'narrow' (the default, the shipped
    model's recipe) never saturates it; labels and silhouettes are untouched; unknown modes are
    refused."""
    from spacenav_perception.training.centroid_task import CentroidDataset
    grey = np.full((32, 32), 0.5, np.float32)
    rng = np.random.default_rng(0)
    means = {name: np.array([float(fn(grey, rng).mean()) for _ in range(2000)])
             for name, fn in (('wide', CentroidDataset._photometric_wide),
                              ('narrow', CentroidDataset._photometric))}
    assert (means['wide'] > 0.99).mean() > 0.1 and (means['narrow'] > 0.99).mean() == 0
    assert np.percentile(means['wide'], 5) < np.percentile(means['narrow'], 5) - 0.05
    tr = make_asteroid_set(tmp_path / 'tr', n=4, size=64, seed=5)
    assert CentroidTask(tr, tr, 'centroidnet').photometric == 'narrow'
    ds = CentroidTask(tr, tr, 'centroidnet', input_size=64, p_empty=0.0,
                      photometric='wide').datasets()[0]
    assert ds.photometric == 'wide'
    for epoch in range(4):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            img = item['image'][0]
            assert img.dtype == torch.float32 and 0 <= float(img.min()) <= float(img.max()) <= 1
            ys, xs = torch.nonzero(item['silhouette'][0] > 0.5, as_tuple=True)
            u, v = (float(a) * 64 - 0.5 for a in item['uv'])
            assert abs(xs.float().mean() - u) < 1.0 and abs(ys.float().mean() - v) < 1.0
    with pytest.raises(ValueError, match='unknown photometric mode'):
        CentroidTask(tr, tr, 'centroidnet', photometric='bright').datasets()


def test_zoom_crops_show_the_body_larger_with_exact_labels(tmp_path):
    """--zoom-crops: in-view whole frames are shown as the node's second pass sees them (a crop
    of the frame at its own resolution, the body larger in the input); the label and the
    silhouette follow the crop to a fraction of an input pixel; a body cut by the frame edge is
    never cropped; fractions outside [0, 1] are refused."""
    import cv2
    from spacenav_perception.training.centroid_task import CentroidDataset
    tr = make_asteroid_set(tmp_path / 'tr', n=8, size=192, seed=6)
    # frame 0: a disc cut by the left edge
    yy, xx = np.mgrid[:192, :192]
    inside = (xx - 5.0) ** 2 + (yy - 90.0) ** 2 <= 30.0 ** 2
    cv2.imwrite(str(tr / 'images' / 'asteroid_000000.png'), inside.astype(np.uint8) * 200)
    cv2.imwrite(str(tr / 'silhouettes' / 'asteroid_000000.png'), inside.astype(np.uint8) * 255)
    lines = (tr / 'labels.csv').read_text().splitlines()
    lines[1] = 'asteroid_000000.png,5.0000,90.0000'
    (tr / 'labels.csv').write_text('\n'.join(lines) + '\n')

    whole = CentroidDataset(tr, 'centroidnet', 64, True, p_empty=0.0, seed=3)
    assert whole.full is None and not whole.zoom_extent.any()
    ds = CentroidDataset(tr, 'centroidnet', 64, True, p_empty=0.0, seed=3, zoom_crops=1.0)
    assert ds.zoom_extent[0] == 0 and (ds.zoom_extent[1:] > 0).all()
    # the extent is the disc's diameter in frame pixels, measured on the 64-px input as the
    # node measures it (the lit group dilated by one input pixel: up to 4 input px more)
    meta = [line.split(',') for line in (tr / 'meta.csv').read_text().splitlines()[1:]]
    excess = ds.zoom_extent[1:] - np.array([float(row[2]) for row in meta[1:]])
    assert (excess >= 0).all() and (excess < 4 * 192 / 64).all()
    zoomed = 0
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            sil = item['silhouette'][0]
            ys, xs = torch.nonzero(sil > 0, as_tuple=True)
            w = sil[ys, xs]
            u, v = (float(a) * 64 - 0.5 for a in item['uv'])
            if i > 0:   # whole discs: the label is the silhouette's centre
                assert abs(float((xs * w).sum() / w.sum()) - u) < 0.15
                assert abs(float((ys * w).sum() / w.sum()) - v) < 0.15
            area = float(sil.sum())
            if area > float(whole.sils[i].astype(np.float32).sum() / 255.0) * 1.5:
                zoomed += 1
                assert i > 0
                lit = item['image'][0] > 0.2
                assert lit.any() and not (lit & (sil < 0.01)).any()
    assert zoomed > 6
    with pytest.raises(ValueError, match='zoom_crops'):
        CentroidTask(tr, tr, 'centroidnet', zoom_crops=1.5)
    import subprocess
    import sys
    exe = str(Path(sys.executable).parent / 'spacenav')
    for extra, words in ((['--zoom-crops', '-0.1'], 'must be in [0, 1]'),
                         (['--arch', 'thesis', '--zoom-crops', '0.5'], 'centroidnet option')):
        result = subprocess.run([exe, 'train', 'centroid', '--data', str(tr), '--val', str(tr),
                                 '--out', str(tmp_path / 'run')] + extra,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and words in result.stderr, result.stderr
        assert 'Traceback' not in result.stderr and not (tmp_path / 'run').exists()


def test_keep_epochs_writes_every_epochs_weights(tmp_path):
    tr = make_asteroid_set(tmp_path / 'tr', n=8, size=64, seed=7)
    out = tmp_path / 'run'
    task = CentroidTask(tr, tr, 'centroidnet', input_size=64, zoom_crops=0.5)
    cfg = TrainConfig(out=str(out), epochs=2, batch_size=4, lr=1e-3, threads=1,
                      keep_epochs=True)
    Trainer(task, cfg).fit()
    first, second = load_checkpoint(out / 'epoch1.pt'), load_checkpoint(out / 'epoch2.pt')
    assert (first['epoch'], second['epoch']) == (0, 1)
    last = load_checkpoint(out / 'last.pt')['model']
    assert all(torch.equal(second['model'][k], last[k]) for k in last)
    assert not all(torch.equal(first['model'][k], last[k]) for k in last)
    assert json.loads((out / 'config.json').read_text())['zoom_crops'] == 0.5


def test_several_data_folders_train_as_one_set(tmp_path):
    """--data DIR DIR: both tasks read every folder, in order, as one training set (frames of
    different sizes keep their own labels); the config names all of them."""
    from spacenav_perception.training.data_roots import as_roots
    a = make_asteroid_set(tmp_path / 'a', n=3, size=64, seed=8)
    b = make_asteroid_set(tmp_path / 'b', n=2, size=96, seed=9)
    task = CentroidTask([a, b], a, 'centroidnet', input_size=64, zoom_crops=0.5)
    ds = task.datasets()[0]
    assert len(ds) == 5 and task.n_train == 5 and len(ds.full) == 5
    assert ds.wh[:, 0].tolist() == [64, 64, 64, 96, 96]
    labels_b = np.loadtxt(b / 'labels.csv', delimiter=',', skiprows=1, usecols=(1, 2))
    assert np.allclose(ds.uv[3:] * 96 - 0.5, labels_b, atol=1e-4)
    assert task.config()['data'] == f'{a} {b}'
    la = make_lunar_set(tmp_path / 'la', n=2, seed=1)
    lb = make_lunar_set(tmp_path / 'lb', n=3, seed=2)
    seg = SegmentationTask([la, lb], la, 'hazardnet', input_hw=(48, 64))
    seg_ds = seg.datasets()[0]
    assert len(seg_ds) == 5 and seg.config()['data'] == f'{la} {lb}'
    one = SegmentationTask(lb, la, 'hazardnet', input_hw=(48, 64)).datasets()[0]
    assert np.array_equal(seg_ds.labels[2:], one.labels)
    with pytest.raises(ValueError, match='no data folder'):
        as_roots([])
