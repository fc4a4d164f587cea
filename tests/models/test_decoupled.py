"""DecoupledNet: parameter count derived by hand, bridge = true back-propagation, the paper's inference map, export."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'streamseg[train]')")

from streamseg.models import build, count_params  # noqa: E402
from streamseg.models.decoupled import DecoupledNet, decoupled_losses, image_labels  # noqa: E402

from ._onnx import export_and_run  # noqa: E402

TINY = {"base_channels": 4, "fc_kernel": 3}


def _conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout


def test_parameter_count_at_the_paper_configuration() -> None:
    with torch.device("meta"):  # 307 M parameters: no memory, no initialisation
        model = build("decouplednet", 21)
    vgg = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256)]
    vgg += [(256, 512)] + [(512, 512)] * 5
    classification = sum(_conv(a, b, 3) for a, b in vgg) + _conv(512, 4096, 7) + _conv(4096, 4096, 1)
    classification += _conv(4096, 20, 1)
    assert classification == 134_342_484
    decoder = [(512, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 256)]
    decoder += [(256, 256), (256, 256), (256, 128), (128, 128), (128, 64), (64, 64), (64, 64)]
    segmentation = _conv(1024, 2048, 7) + _conv(2048, 2048, 1) + _conv(2048, 512, 7)  # fc6/fc7_seg, fc6_deconv
    segmentation += sum(_conv(a, b, 3) for a, b in decoder) + _conv(64, 2, 1)
    bn = 2 * (2048 + 2048 + 512 + sum(b for _, b in decoder))  # scale and shift per channel
    bridge = 2 * 2 * 512  # BN of pool5 and of the activation map
    assert segmentation + bn == 173_105_858
    assert count_params(model) == classification + segmentation + bn + bridge == 307_450_390
    assert count_params(model) == count_params(model, trainable_only=False)


@pytest.mark.parametrize(("h", "w"), [(96, 128), (101, 131)])
def test_normalised_class_scores_at_the_input_size(h: int, w: int) -> None:
    torch.manual_seed(0)
    model = build("decouplednet", 4, **TINY).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, h, w))
    assert out.shape == (2, 4, h, w)
    assert torch.allclose(out.sum(1), torch.ones(2, h, w), atol=1e-5)
    assert out.min() >= 0


def test_too_small_for_the_fc_kernel_fails() -> None:
    model = build("decouplednet", 3, base_channels=4).eval()  # fc6 7x7 needs pool5 >= 7, 224 pixels
    with pytest.raises(RuntimeError):
        model(torch.randn(1, 3, 96, 96))


def test_needs_a_background_and_a_class() -> None:
    with pytest.raises(ValueError, match="at least one class"):
        DecoupledNet(1)


def test_the_bridge_is_the_gradient_of_the_class_scores_with_respect_to_pool5() -> None:
    torch.manual_seed(1)
    model = build("decouplednet", 4, **TINY).eval()
    x = torch.randn(2, 3, 96, 128)
    f = model.classify(x)
    weights = torch.rand(2, 2, 3)  # two weightings of the three classes per image
    maps = model.activation_maps(f, weights)
    assert maps.shape == (4, 32, 3, 4)
    for n in range(2):
        for p in range(2):
            pool5 = f.pool5[n : n + 1].detach().requires_grad_(True)
            fc7 = torch.relu(model.fc7(torch.relu(model.fc6(pool5))))
            scores = model.cls_score(fc7).amax(dim=(2, 3))[0]
            (grad,) = torch.autograd.grad((weights[n, p] * scores).sum(), pool5)
            assert torch.allclose(maps[n * 2 + p], grad[0], atol=1e-6), (n, p)


def test_classes_below_the_threshold_get_nothing() -> None:
    torch.manual_seed(2)
    model = build("decouplednet", 4, **TINY).eval()
    with torch.no_grad():
        model.cls_score.bias.copy_(torch.tensor([-30.0, 30.0, 30.0]))  # class 1 absent, 2 and 3 present
        out = model(torch.randn(1, 3, 96, 128))
    assert float(out[0, 1].abs().max()) == 0.0
    assert float(out[0, 2].min()) > 0 and float(out[0, 3].min()) > 0
    model.threshold = 1.0  # nothing present: everything is background
    with torch.no_grad():
        out = model(torch.randn(1, 3, 96, 128))
    assert torch.equal(out[0, 0], torch.ones(96, 128))


def test_image_labels_from_masks_leave_out_background_and_ignore() -> None:
    masks = torch.tensor([[[0, 2], [255, 2]], [[0, 0], [0, 1]]])
    assert image_labels(masks, 4).tolist() == [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]


def test_training_keeps_the_two_networks_decoupled() -> None:
    torch.manual_seed(3)
    model = build("decouplednet", 3, **TINY).train()
    x = torch.randn(2, 3, 96, 128)
    masks = torch.zeros(2, 96, 128, dtype=torch.long)
    masks[:, 20:60, 30:90] = 1
    masks[1, 70:, :40] = 2
    masks[0, :4] = 255
    cls_loss, seg_loss = decoupled_losses(model, x, masks, torch.tensor([True, False]))
    assert float(seg_loss) > 0 and float(cls_loss) > 0
    seg_loss.backward()
    assert model.conv1_1.weight.grad is None and model.cls_score.weight.grad is None
    assert model.seg_score.weight.grad is not None and float(model.seg_score.weight.grad.abs().sum()) > 0
    model.zero_grad(set_to_none=True)
    cls_loss.backward()
    assert float(model.conv1_1.weight.grad.abs().sum()) > 0
    assert model.seg_score.weight.grad is None and model.fc6_seg[0].weight.grad is None


def test_no_pixel_labels_no_segmentation_loss() -> None:
    model = build("decouplednet", 3, **TINY).train()
    masks = torch.ones(2, 96, 128, dtype=torch.long)
    _, seg_loss = decoupled_losses(model, torch.randn(2, 3, 96, 128), masks, torch.tensor([False, False]))
    assert float(seg_loss) == 0.0


def test_onnx_export_matches_torch() -> None:
    torch.manual_seed(4)
    model = build("decouplednet", 3, **TINY).eval()
    x = torch.randn(2, 3, 96, 128)
    graph, got = export_and_run(model, torch.zeros(1, 3, 96, 128), x)
    with torch.no_grad():
        ref = model(x).numpy()
    assert got.shape == ref.shape
    assert float(np.abs(got - ref).max()) < 1e-4
    assert "MaxUnpool" not in {n.op_type for n in graph.graph.node}
