"""Network shapes, the thesis architecture layer by layer, scriptability."""
import pytest
import torch
from torch import nn

from spacenav_perception.nets.centroid_net import CentroidNet
from spacenav_perception.nets.hazard_net import HazardNet
from spacenav_perception.nets.report_unet import ReportUNet
from spacenav_perception.nets.thesis_cnn import ThesisCNN


def test_thesis_cnn_layers_exactly_as_appendix():
    m = ThesisCNN()
    convs = [m.conv1, m.conv2, m.conv3, m.conv4, m.conv5, m.conv6]
    spec = [(1, 32, 9, 0), (32, 64, 7, 1), (64, 128, 5, 0), (128, 256, 5, 0), (256, 512, 2, 1),
            (512, 1024, 2, 0)]
    for c, (cin, cout, k, p) in zip(convs, spec):
        assert (c.in_channels, c.out_channels, c.kernel_size, c.padding) == (cin, cout, (k, k), (p, p))
    assert isinstance(m.dropout, nn.Dropout2d) and m.dropout.p == pytest.approx(0.175)
    assert (m.fc1.in_features, m.fc1.out_features) == (1024, 2)
    assert sum(p.numel() for p in m.parameters()) == 3752450


def test_thesis_cnn_spatial_sizes_and_output():
    m = ThesisCNN().eval()
    sizes = {}
    for name in ('conv1', 'conv2', 'conv3', 'conv4', 'conv5', 'conv6'):
        getattr(m, name).register_forward_hook(
            lambda mod, i, o, name=name: sizes.__setitem__(name, tuple(o.shape[-2:])))
    out = m(torch.rand(3, 1, 128, 128))
    assert out.shape == (3, 2)
    # pools after conv1..4 and conv6, none after conv5
    assert sizes == {'conv1': (120, 120), 'conv2': (56, 56), 'conv3': (24, 24),
                     'conv4': (8, 8), 'conv5': (5, 5), 'conv6': (4, 4)}


def test_centroid_net_output_convention_and_uniform_map_gives_centre():
    m = CentroidNet().eval()
    out = m(torch.rand(2, 1, 256, 256))
    assert out.shape == (2, 3)
    assert torch.all((out[:, :2] >= 0) & (out[:, :2] <= 1))
    with torch.no_grad():   # head silenced: the weight map is the brightness prior alone
        m.head.weight.zero_()
        m.head.bias.zero_()
    img = torch.zeros(1, 1, 128, 128)
    img[0, 0, 40:56, 64:96] = 1.0          # a uniform bright box: its centre over the extent
    out = m(img)
    assert out[0, :2].tolist() == pytest.approx([80 / 128, 48 / 128], abs=2e-3)
    flat = m(torch.full((1, 1, 128, 128), 0.5))   # flat image: the frame centre
    assert flat[0, :2].tolist() == pytest.approx([0.5, 0.5], abs=1e-6)


@pytest.mark.parametrize('factory,shape,out_shape', [
    (ThesisCNN, (1, 1, 128, 128), (1, 2)),
    (CentroidNet, (1, 1, 192, 192), (1, 3)),
    (lambda: ReportUNet(base=8), (1, 3, 64, 96), (1, 4, 64, 96)),
    (lambda: HazardNet(), (1, 3, 240, 352), (1, 4, 240, 352)),
    (lambda: HazardNet(full_res=True), (1, 3, 240, 352), (1, 4, 240, 352)),
    (lambda: HazardNet(subpixel=True), (1, 3, 240, 352), (1, 4, 240, 352)),
])
def test_scripted_matches_eager(factory, shape, out_shape):
    m = factory().eval()
    x = torch.rand(*shape)
    with torch.no_grad():
        ref = m(x)
        got = torch.jit.script(m)(x)
    assert ref.shape == out_shape
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


class _SpaceToDepthSkip(nn.Module):
    """Stands in for the last decoder block: returns the space-to-depth input it was given."""

    def forward(self, x, skip):
        return skip[:, -12:]


def test_subpixel_head_puts_each_pixel_back_where_it_came_from():
    """The sub-pixel stage rearranges 2 x 2 blocks twice (space-to-depth in, pixel shuffle out);
    with the decoder replaced by a pass-through of the rearranged input and a head that copies
    colour c to class c, the logits must be the input image itself, pixel for pixel."""
    m = HazardNet(subpixel=True).eval()
    m.dec0 = _SpaceToDepthSkip()
    m.head = nn.Conv2d(12, 16, 1, bias=False)
    with torch.no_grad():
        m.head.weight.zero_()
        for c in range(3):           # pixel_unshuffle / pixel_shuffle channel = c * 4 + sub-pixel
            for k in range(4):
                m.head.weight[c * 4 + k, c * 4 + k] = 1.0
        x = torch.rand(2, 3, 64, 96)
        out = m(x)
    assert out.shape == (2, 4, 64, 96)
    torch.testing.assert_close(out[:, :3], x)
    assert torch.count_nonzero(out[:, 3]) == 0


def test_train_cli_segmentation_archs_match_the_task():
    from spacenav_perception.commands.train import SEGMENTATION_ARCHS, SEGMENTATION_DEFAULT_ARCH
    from spacenav_perception.training.segmentation_task import ARCHS, DEFAULT_ARCH, build_model
    assert SEGMENTATION_ARCHS == ARCHS
    assert SEGMENTATION_DEFAULT_ARCH == DEFAULT_ARCH
    assert build_model('hazardnet_sp').subpixel


def test_hazardnet_output_stages_are_exclusive():
    with pytest.raises(ValueError, match='pick one'):
        HazardNet(full_res=True, subpixel=True)


def test_report_unet_structure():
    m = ReportUNet()
    kinds = {type(x) for x in m.modules()}
    assert {nn.BatchNorm2d, nn.MaxPool2d, nn.Dropout, nn.ConvTranspose2d} <= kinds
    assert all(d.p == pytest.approx(0.2) for d in m.modules() if isinstance(d, nn.Dropout))
    assert m.head.kernel_size == (1, 1) and m.head.out_channels == 4


class _BrightestPixel(torch.nn.Module):
    """An exact 'network' for the test: (u, v) of the brightest pixel, in-view logit = its value."""

    def forward(self, x):
        n, _, h, w = x.shape
        flat = x.reshape(n, -1)
        i = flat.argmax(1)
        return torch.stack([((i % w).float() + 0.5) / w, ((i // w).float() + 0.5) / h,
                            flat.amax(1)], 1)


def test_d4_averaging_maps_every_view_back_to_the_frame():
    from spacenav_perception.nets.centroid_net import CentroidNet, D4Averaged
    x = torch.zeros(3, 1, 16, 16)
    for k, (r, c) in enumerate([(3, 11), (9, 2), (15, 0)]):
        x[k, 0, r, c] = 1.0 + k
    assert torch.allclose(D4Averaged(_BrightestPixel())(x), _BrightestPixel()(x), atol=1e-6)
    # a real network: same convention and shape, and it scripts (the shipped format)
    net = D4Averaged(CentroidNet().eval()).eval()
    y = torch.rand(2, 1, 64, 64)
    with torch.inference_mode():
        out = net(y)
        assert out.shape == (2, 3)
        assert torch.allclose(torch.jit.script(net)(y), out, atol=1e-5)
        # averaging over the group makes the answer equivariant: flipping the input flips it
        flipped = net(y.flip(3))
    assert torch.allclose(flipped[:, 0], 1 - out[:, 0], atol=1e-5)
    assert torch.allclose(flipped[:, 1:], out[:, 1:], atol=1e-5)
