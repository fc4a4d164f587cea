"""ResNet trunks: torchvision's layout (state dicts built here by hand from torchvision's architecture), strides,
dilation, and the ``pretrained_backbone`` option of the networks built on them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'streamseg[train]')")

from streamseg.errors import ModelError  # noqa: E402
from streamseg.models import count_params  # noqa: E402
from streamseg.models.resnet import ResNet, resnet18, resnet50  # noqa: E402

# torchvision resnet18 / resnet50 parameter counts minus their ImageNet classifier (fc: 512*1000+1000, 2048*1000+1000)
PARAMS = {"resnet18": 11_689_512 - 513_000, "resnet50": 25_557_032 - 2_049_000}
ENTRIES = {"resnet18": 122, "resnet50": 320}  # len(torchvision.models.resnetXX().state_dict())


def torchvision_resnet_state(kind: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict with the keys and shapes of torchvision's ``kind``, written out from its architecture."""
    blocks, bottleneck = {"resnet18": ((2, 2, 2, 2), False), "resnet50": ((3, 4, 6, 3), True)}[kind]
    expansion = 4 if bottleneck else 1
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}

    def conv(name: str, cout: int, cin: int, k: int) -> None:
        state[f"{name}.weight"] = torch.randn(cout, cin, k, k, generator=g) * 0.05

    def bn(name: str, c: int) -> None:
        state[f"{name}.weight"] = torch.rand(c, generator=g) + 0.5
        state[f"{name}.bias"] = torch.randn(c, generator=g) * 0.1
        state[f"{name}.running_mean"] = torch.randn(c, generator=g) * 0.1
        state[f"{name}.running_var"] = torch.rand(c, generator=g) + 0.5
        state[f"{name}.num_batches_tracked"] = torch.tensor(0)

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    cin = 64
    for i, n in enumerate(blocks):
        planes = 64 * 2**i
        for b in range(n):
            p = f"layer{i + 1}.{b}"
            if bottleneck:
                conv(f"{p}.conv1", planes, cin, 1)
                bn(f"{p}.bn1", planes)
                conv(f"{p}.conv2", planes, planes, 3)
                bn(f"{p}.bn2", planes)
                conv(f"{p}.conv3", planes * 4, planes, 1)
                bn(f"{p}.bn3", planes * 4)
            else:
                conv(f"{p}.conv1", planes, cin, 3)
                bn(f"{p}.bn1", planes)
                conv(f"{p}.conv2", planes, planes, 3)
                bn(f"{p}.bn2", planes)
            if b == 0 and (i > 0 or cin != planes * expansion):
                conv(f"{p}.downsample.0", planes * expansion, cin, 1)
                bn(f"{p}.downsample.1", planes * expansion)
            cin = planes * expansion
    state["fc.weight"] = torch.randn(1000, cin, generator=g)
    state["fc.bias"] = torch.randn(1000, generator=g)
    assert len(state) == ENTRIES[kind]
    return state


@pytest.fixture(scope="module")
def resnet_states() -> dict[str, dict[str, torch.Tensor]]:
    return {kind: torchvision_resnet_state(kind) for kind in ("resnet18", "resnet50")}


@pytest.fixture(scope="module")
def resnet_files(
    tmp_path_factory: pytest.TempPathFactory, resnet_states: dict[str, dict[str, torch.Tensor]]
) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("backbones")
    files = {}
    for kind, state in resnet_states.items():
        files[kind] = folder / f"{kind}.pth"
        torch.save(state, files[kind])
    return files


def assert_loaded(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    own = module.state_dict()
    for key, value in state.items():
        if not key.startswith("fc."):
            assert torch.equal(own[key], value), key


def test_parameter_counts_match_torchvision_without_classifier() -> None:
    assert count_params(resnet18()) == PARAMS["resnet18"]
    assert count_params(resnet50()) == PARAMS["resnet50"]
    assert count_params(resnet50(dilated=True)) == PARAMS["resnet50"]  # dilation changes sampling, not weights


@pytest.mark.parametrize(
    ("build", "strides", "channels"),
    [
        (lambda: resnet18(width=16), (4, 8, 16, 32), (16, 32, 64, 128)),
        (lambda: resnet50(width=16), (4, 8, 16, 32), (64, 128, 256, 512)),
        (lambda: resnet50(dilated=True, width=16), (4, 8, 8, 8), (64, 128, 256, 512)),
    ],
    ids=["resnet18", "resnet50", "resnet50-dilated"],
)
def test_feature_strides_and_widths(
    build: Callable[[], ResNet], strides: tuple[int, ...], channels: tuple[int, ...]
) -> None:
    net = build().eval()
    with torch.no_grad():
        features = net(torch.zeros(1, 3, 64, 96))
    assert [tuple(f.shape) for f in features] == [
        (1, c, 64 // s, 96 // s) for c, s in zip(channels, strides, strict=True)
    ]
    assert net.channels == channels


def test_dilated_resnet50_dilates_every_block_of_layer3_and_layer4() -> None:
    net = resnet50(dilated=True)
    for layer, dilation in ((net.layer3, 2), (net.layer4, 4)):
        for block in layer:
            assert block.conv2.dilation == (dilation, dilation)
            assert block.conv2.padding == (dilation, dilation)
            assert block.conv2.stride == (1, 1)
        assert layer[0].downsample[0].stride == (1, 1)
    assert net.layer2[0].conv2.stride == (2, 2)  # torchvision "v1.5": the stride is in the 3x3


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["resnet18", "resnet50"])
def test_torchvision_state_dict_loads_into_the_trunk(
    kind: str, resnet_files: dict[str, Path], resnet_states: dict[str, dict[str, torch.Tensor]]
) -> None:
    from streamseg.models.backbones import load_backbone_weights

    net = resnet18() if kind == "resnet18" else resnet50(dilated=True)
    load_backbone_weights(net, resnet_files[kind], kind)
    assert_loaded(net, resnet_states[kind])
    with torch.no_grad():
        assert all(torch.isfinite(f).all() for f in net.eval()(torch.randn(1, 3, 64, 64)))


def test_weights_of_the_wrong_width_or_kind_are_refused(resnet_files: dict[str, Path]) -> None:
    from streamseg.models.backbones import load_backbone_weights

    with pytest.raises(ModelError, match="do not fit"):
        load_backbone_weights(resnet50(width=32), resnet_files["resnet50"], "resnet50")
    with pytest.raises(ModelError, match="unexpected keys"):
        load_backbone_weights(resnet18(), resnet_files["resnet50"], "resnet18")


@pytest.mark.slow
def test_pspnet_and_linknet_load_their_pretrained_backbone(
    resnet_files: dict[str, Path], resnet_states: dict[str, dict[str, torch.Tensor]]
) -> None:
    from streamseg.models import build

    psp = build("pspnet", pretrained_backbone=str(resnet_files["resnet50"]))
    link = build("linknet", pretrained_backbone=str(resnet_files["resnet18"]))
    assert_loaded(psp.backbone, resnet_states["resnet50"])
    assert_loaded(link.encoder, resnet_states["resnet18"])
