"""torchvision-format state dicts load into the zoo's backbones from local files, strictly.

torchvision is not a dependency: the state dicts are written here by hand from torchvision's
architectures (``vgg.py``'s ``cfgs["D"]``, ``resnet.py``), checked against torchvision's published
parameter counts, filled with random tensors and saved with ``torch.save``.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from streamseg.errors import ConfigError, ModelError  # noqa: E402
from streamseg.models.backbones import load_backbone_weights, torchvision_layout  # noqa: E402
from streamseg.models.fcn import fcn8s  # noqa: E402
from streamseg.models.resnet import resnet18, resnet50, resnet101  # noqa: E402
from streamseg.models.segnet import segnet  # noqa: E402

# torchvision vgg16: indices of the 13 convs in ``features`` (conv, relu, ... pool); with BN each conv
# is followed by its BatchNorm at index + 1.
VGG16_CONVS = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
VGG16_BN_CONVS = [0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40]
VGG_WIDTHS = [1, 1, 2, 2, 4, 4, 4, 8, 8, 8, 8, 8, 8]  # x base width (64)


def _bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {
        f"{prefix}.{p}": (c,) for p in ("weight", "bias", "running_mean", "running_var")
    }
    shapes[f"{prefix}.num_batches_tracked"] = ()
    return shapes


def vgg_shapes(bn: bool, base: int = 64) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    cin = 3
    for index, mult in zip(VGG16_BN_CONVS if bn else VGG16_CONVS, VGG_WIDTHS, strict=True):
        cout = base * mult
        shapes[f"features.{index}.weight"] = (cout, cin, 3, 3)
        shapes[f"features.{index}.bias"] = (cout,)
        if bn:
            shapes.update(_bn(f"features.{index + 1}", cout))
        cin = cout
    fc = base * 64
    for i, (n_out, n_in) in zip((0, 3, 6), ((fc, cin * 49), (fc, fc), (1000, fc)), strict=True):
        shapes[f"classifier.{i}.weight"] = (n_out, n_in)
        shapes[f"classifier.{i}.bias"] = (n_out,)
    return shapes


def resnet_shapes(bottleneck: bool, blocks: tuple[int, ...], base: int = 64) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (base, 3, 7, 7), **_bn("bn1", base)}
    cin = base
    expansion = 4 if bottleneck else 1
    for layer, n in enumerate(blocks, start=1):
        planes = base * 2 ** (layer - 1)
        for b in range(n):
            p = f"layer{layer}.{b}"
            if bottleneck:
                convs = [(planes, cin, 1), (planes, planes, 3), (planes * 4, planes, 1)]
            else:
                convs = [(planes, cin, 3), (planes, planes, 3)]
            for i, (o, c, k) in enumerate(convs, start=1):
                shapes[f"{p}.conv{i}.weight"] = (o, c, k, k)
                shapes.update(_bn(f"{p}.bn{i}", o))
            if b == 0 and (layer > 1 or bottleneck):
                shapes[f"{p}.downsample.0.weight"] = (planes * expansion, cin, 1, 1)
                shapes.update(_bn(f"{p}.downsample.1", planes * expansion))
            cin = planes * expansion
    shapes["fc.weight"] = (1000, cin)
    shapes["fc.bias"] = (1000,)
    return shapes


SHAPES = {
    "vgg16": lambda base=64: vgg_shapes(False, base),
    "vgg16_bn": lambda base=64: vgg_shapes(True, base),
    "resnet18": lambda base=64: resnet_shapes(False, (2, 2, 2, 2), base),
    "resnet50": lambda base=64: resnet_shapes(True, (3, 4, 6, 3), base),
    "resnet101": lambda base=64: resnet_shapes(True, (3, 4, 23, 3), base),
}
# torchvision's documented parameter counts and state-dict lengths.
PUBLISHED = {
    "vgg16": (138_357_544, 32),
    "vgg16_bn": (138_365_992, 97),
    "resnet18": (11_689_512, 122),
    "resnet50": (25_557_032, 320),
    "resnet101": (44_549_160, 626),
}


def random_state(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        k: torch.tensor(7) if k.endswith("num_batches_tracked") else torch.randn(s, generator=g)
        for k, s in shapes.items()
    }


@pytest.mark.parametrize("kind", list(PUBLISHED))
def test_hand_written_layouts_match_torchvision_and_the_loader(kind) -> None:
    shapes = SHAPES[kind]()
    params = sum(
        torch.Size(s).numel()
        for k, s in shapes.items()
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    assert (params, len(shapes)) == PUBLISHED[kind]
    assert set(torchvision_layout(kind)) == set(shapes)


@pytest.mark.slow
def test_vgg16_into_fcn(tmp_path) -> None:
    state = random_state(SHAPES["vgg16"](base=2))
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    model = fcn8s(3, base_channels=2, pretrained_backbone=str(path))
    assert torch.equal(model.conv1_1.weight, state["features.0.weight"])
    assert torch.equal(model.conv3_2.bias, state["features.12.bias"])
    assert torch.equal(model.conv5_3.weight, state["features.28.weight"])
    assert torch.equal(model.fc7.weight.flatten(1), state["classifier.3.weight"])
    # fc6 as a 7x7 conv computes torchvision's Linear on the flattened 7x7 pool5.
    pool5 = torch.randn(2, 16, 7, 7)
    linear = pool5.flatten(1) @ state["classifier.0.weight"].T + state["classifier.0.bias"]
    with torch.no_grad():
        torch.testing.assert_close(model.fc6(pool5).flatten(1), linear, rtol=1e-4, atol=1e-4)


def test_vgg16_bn_into_segnet_without_classifier_and_old_bn_keys(tmp_path) -> None:
    state = random_state(SHAPES["vgg16_bn"](base=2))
    # A file saved before PyTorch 0.4.1, or with the ImageNet head stripped, still loads.
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked") and not k.startswith("classifier")}
    path = tmp_path / "vgg16_bn.pth"
    torch.save(state, path)
    model = segnet(4, base_channels=2, pretrained_backbone=str(path))
    assert torch.equal(model.conv4_2.conv.weight, state["features.27.weight"])
    assert torch.equal(model.conv4_2.bn.running_var, state["features.28.running_var"])
    assert torch.equal(model.conv1_1.bn.weight, state["features.1.weight"])


@pytest.mark.parametrize(
    ("kind", "build", "key"),
    [
        ("resnet18", lambda: resnet18(width=4), "layer3.1.bn2.running_mean"),
        ("resnet18", lambda: resnet18(width=4), "layer2.0.downsample.0.weight"),
        ("resnet50", lambda: resnet50(width=4), "layer1.0.downsample.1.weight"),
        ("resnet50", lambda: resnet50(width=4, dilated=True), "layer4.2.conv3.weight"),
        ("resnet101", lambda: resnet101(width=4), "layer3.22.bn3.running_var"),
    ],
)
def test_resnet_into_the_zoo_trunk(tmp_path, kind, build, key) -> None:
    state = random_state(SHAPES[kind](base=4))
    path = tmp_path / f"{kind}.pth"
    torch.save(state, path)
    model = build()
    load_backbone_weights(model, path, kind)
    assert torch.equal(model.state_dict()[key], state[key])
    assert int(model.layer1[0].bn1.num_batches_tracked) == 7


def _drop(state, key):
    return {k: v for k, v in state.items() if k != key}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: _drop(s, "features.10.weight"), "lacks features.10.weight"),
        (lambda s: {**s, "features.99.weight": torch.zeros(1)}, "unexpected keys features.99.weight"),
        (lambda s: {f"module.{k}": v for k, v in s.items()}, "unexpected keys module.features.0.weight"),
        (lambda s: {**s, "features.0.weight": torch.zeros(5, 3, 3, 3)}, r"features.0.weight \(5, 3, 3, 3\)"),
        (lambda s: [1, 2], "not a state dict"),
    ],
)
def test_bad_files_raise_model_error_naming_the_file(tmp_path, edit, message) -> None:
    path = tmp_path / "weights.pth"
    torch.save(edit(random_state(SHAPES["vgg16"](base=2))), path)
    with pytest.raises(ModelError, match=message) as info:
        fcn8s(3, base_channels=2, pretrained_backbone=str(path))
    assert str(path) in str(info.value)


def test_full_size_weights_do_not_fit_a_narrow_model(tmp_path) -> None:
    path = tmp_path / "resnet18.pth"
    torch.save(random_state(SHAPES["resnet18"](base=8)), path)
    with pytest.raises(ModelError, match=f"{path}.*do not fit ResNet"):
        load_backbone_weights(resnet18(width=4), path, "resnet18")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("missing.pth", "cannot read backbone weights"),
        ("garbage.pth", "cannot read backbone weights"),
        ("https://download.pytorch.org/models/vgg16-397923af.pth", "local file"),
    ],
)
def test_unreadable_sources(tmp_path, source, message) -> None:
    (tmp_path / "garbage.pth").write_bytes(b"not a torch file")
    path = source if source.startswith("https") else str(tmp_path / source)
    with pytest.raises(ModelError, match=message) as info:
        fcn8s(3, base_channels=2, pretrained_backbone=path)
    assert path in str(info.value)


def test_unknown_kind() -> None:
    with pytest.raises(ConfigError, match="unknown backbone kind 'vgg19'"):
        torchvision_layout("vgg19")
