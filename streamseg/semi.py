"""Semi-supervised training: unlabelled images through an adversary, image-level labels for DecoupledNet.

``streamseg train NET --data LABELLED --unlabeled DIR --semi MODE`` trains any zoo network with
few pixel-labelled images and many unlabelled ones; ``streamseg train decouplednet --data LABELLED
--image-labelled DIR`` trains DecoupledNet with image-level labels (the classes present, read from
DIR's masks; its pixels are never used). Each mode is an :class:`Objective` that
:func:`streamseg.train.train` calls for the loss of every step and after every optimizer step; the
training loop, schedule, checkpoints and evaluation are the same as for plain training.

* ``souly`` (Souly, Spampinato, Shah. Semi Supervised Semantic Segmentation Using Generative
  Adversarial Network. ICCV 2017): a generator (DCGAN: a projected noise vector, four 4x4/2
  transposed convolutions with BatchNorm and ReLU, tanh) makes images; the discriminator is the
  segmentation network itself with K + 1 outputs, the last one "fake". Its loss per pixel:
  cross-entropy over the K + 1 outputs on labelled pixels, -log(1 - p_fake) on unlabelled real
  images, -log p_fake on generated ones. The generator minimises -log(1 - p_fake) on its images
  (the non-saturating form). Generated batches go through the network with its batch norm's
  running statistics frozen (:func:`frozen_bn_statistics`): those statistics are what it will
  segment real frames with. The checkpoint holds the plain K-class network: the fake class's
  output channel is sliced off (:func:`drop_fake_class`), which is exact for networks whose layers
  after the classifier keep classes apart, checked numerically; a network with a trainable
  class-to-class layer (FCN's learned x2 upsampling) is refused before training starts.
* ``hung`` (Hung, Tsai, Liou, Lin, Yang. Adversarial Learning for Semi-Supervised Semantic
  Segmentation. BMVC 2018): a fully convolutional discriminator on K-channel label maps (five
  4x4/2 convolutions, 64-128-256-512-1, leaky ReLU 0.2, upsampled to the input) learns to tell
  one-hot ground truth (1) from the segmentation network's softmax (0). The segmentation network
  minimises cross-entropy + 0.01 x adversarial loss on labelled images + 0.001 x adversarial loss
  on unlabelled ones + 0.1 x self-training cross-entropy on the unlabelled pixels whose
  discriminator confidence exceeds 0.2, against its own argmax; self-training starts after a
  quarter of the steps (the paper: 5,000 of 20,000). Discriminator: Adam, 1e-4, betas (0.9, 0.99).
* DecoupledNet (:mod:`streamseg.models.decoupled`): multi-label classification loss on every
  image, segmentation loss on the pixel-labelled ones.

No torch at import time of ``streamseg``: this module is imported by ``streamseg.train`` only.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from .contract import InputSpec
from .datasets import IGNORE_INDEX, SegDataset, augment
from .errors import ConfigError, ModelError
from .models import build
from .models._torch import F, Tensor, nn, torch
from .preprocess import preprocess

MODES = ("souly", "hung")
_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


def unlabeled_images(root: str | Path) -> list[Path]:
    """Images of an unlabelled folder: its own images, or those of ``JPEGImages/`` or ``images/`` in it."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"--unlabeled {root}: no such folder")
    for folder in (root / "JPEGImages", root / "images", root):
        if folder.is_dir():
            found = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_EXTS and p.is_file())
            if found:
                return found
    raise ConfigError(f"--unlabeled {root}: no images ({', '.join(_IMAGE_EXTS)}) in it, JPEGImages/ or images/")


def load_unlabeled(paths: list[Path], size: tuple[int, int]) -> list[np.ndarray]:
    """Read and resize (to ``size``, H x W) every unlabelled image once; an unreadable one is an error."""
    images = []
    for p in paths:
        image = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if image is None:
            raise ConfigError(f"--unlabeled {p}: cannot read image")
        images.append(cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR))
    return images


def batch_tensor(images: list[np.ndarray], spec: InputSpec) -> Tensor:
    """BGR uint8 crops (one size) -> the model's input batch, prepared as serving prepares frames."""
    h, w = images[0].shape[:2]
    return torch.from_numpy(preprocess(images, spec.model_copy(update={"height": h, "width": w})))


class Objective(Protocol):
    """What a semi-supervised mode adds to the training loop."""

    last: dict[str, float]  # the parts of the last step's losses, for the progress line

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, rng: np.random.Generator) -> Tensor:
        """The trained network's loss for one step on the labelled batch (x, y)."""
        ...

    def after_step(self, model: nn.Module) -> None:
        """Update the mode's other networks (generator, discriminator) after the network's step."""
        ...

    def plain(self, model: nn.Module) -> nn.Module:
        """The K-class segmentation network to checkpoint, export and evaluate."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """The other networks and their optimizers, for the checkpoint and ``--resume``."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def _main(out: Tensor | tuple[Tensor, ...]) -> tuple[Tensor, Tensor | None]:
    """(main logits, auxiliary logits or None): PSPNet returns both in training mode."""
    if isinstance(out, tuple):
        return out[0], out[1]
    return out, None


class _Unlabelled:
    """Random augmented batches of the unlabelled images, drawn from the epoch's generator."""

    def __init__(
        self,
        images: list[np.ndarray],
        batch_size: int,
        spec: InputSpec,
        crop: tuple[int, int],
        scale: tuple[float, float],
        flip: bool,
        device: torch.device,
    ) -> None:
        self.images, self.batch_size, self.spec = images, batch_size, spec
        self.crop, self.scale, self.flip, self.device = crop, scale, flip, device
        self.dummy = [np.zeros(im.shape[:2], np.uint8) for im in images]

    def draw(self, rng: np.random.Generator) -> Tensor:
        chosen = rng.choice(len(self.images), size=min(self.batch_size, len(self.images)), replace=False)
        crops = [augment(self.images[i], self.dummy[i], rng, self.crop, self.scale, self.flip)[0] for i in chosen]
        return batch_tensor(crops, self.spec).to(self.device)


# -- Souly et al.: generator + (K + 1)-class discriminator -------------------------------------------


class Generator(nn.Module):
    """DCGAN generator: z (N, z_dim) -> images (N, 3, H, W) in [-1, 1], any H, W (cropped from a multiple of 16)."""

    def __init__(self, size: tuple[int, int], z_dim: int = 100, width: int = 64) -> None:
        super().__init__()
        self.size, self.z_dim = size, z_dim
        self.h0, self.w0 = math.ceil(size[0] / 16), math.ceil(size[1] / 16)
        self.width = width * 8
        self.project = nn.Linear(z_dim, self.width * self.h0 * self.w0)
        layers: list[nn.Module] = [nn.BatchNorm2d(self.width), nn.ReLU(inplace=True)]
        cin = self.width
        for cout in (width * 4, width * 2, width):
            layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin = cout
        layers += [nn.ConvTranspose2d(cin, 3, 4, 2, 1), nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        x: Tensor = self.body(self.project(z).reshape(-1, self.width, self.h0, self.w0))
        return x[:, :, : self.size[0], : self.size[1]]


@contextlib.contextmanager
def frozen_bn_statistics(model: nn.Module) -> Iterator[None]:
    """Batch norm still normalises with the batch's statistics but leaves its running ones alone.

    The discriminator is the network that will segment real frames with those running statistics,
    so batches of generated images must not move them (measured: with them, the exported LinkNet
    labelled every pixel of the street frames as one class).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0  # running = running * (1 - 0) + batch * 0: unchanged
    try:
        yield
    finally:
        for m, momentum in zip(norms, saved, strict=True):
            m.momentum = momentum


def _fake_terms(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Per pixel (-log p_fake, -log(1 - p_fake)) for (N, K + 1, H, W) logits whose last channel is "fake"."""
    everything = torch.logsumexp(logits, dim=1)
    real = torch.logsumexp(logits[:, :-1], dim=1)
    return everything - logits[:, -1], everything - real


def mixing_layers(network: str, num_classes: int, options: dict[str, Any]) -> list[str]:
    """Trainable parameters that map classes to classes (their shape changes in two dimensions with K)."""
    with torch.device("meta"):
        a = build(network, num_classes + 1, **options)
        b = build(network, num_classes, **options)
    shapes = {k: v.shape for k, v in b.named_parameters()}
    return [
        k
        for k, v in a.named_parameters()
        if v.requires_grad and sum(x != y for x, y in zip(v.shape, shapes[k], strict=True)) >= 2
    ]


def drop_fake_class(
    model: nn.Module, network: str, num_classes: int, options: dict[str, Any], probe: tuple[int, int]
) -> nn.Module:
    """The K-class network whose logits are the first K of ``model``'s K + 1 (the fake class dropped).

    Every weight or buffer whose size differs between the two builds is cut to its first K entries
    in the differing dimension; the result is checked on a random batch at ``probe`` (H, W).
    """
    device = next(model.parameters()).device
    plain = build(network, num_classes, **options).to(device)
    source = model.state_dict()
    state = {}
    for key, target in plain.state_dict().items():
        value = source[key]
        if value.shape != target.shape:
            if any(
                a != t and (a, t) != (num_classes + 1, num_classes)
                for a, t in zip(value.shape, target.shape, strict=True)
            ):
                raise ModelError(f"{network}: '{key}' is {tuple(value.shape)}, cannot cut it to {tuple(target.shape)}")
            value = value[tuple(slice(0, t) for t in target.shape)]
        state[key] = value.clone()
    plain.load_state_dict(state)
    was_training = model.training
    model.eval()
    plain.eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, *probe, generator=gen).to(device)
    with torch.no_grad():
        full, _ = _main(model(x))
        cut, _ = _main(plain(x))
    model.train(was_training)
    diff = float((full[:, :num_classes] - cut).abs().max())
    scale = max(1.0, float(full.abs().max()))
    if diff > 1e-4 * scale:
        raise ModelError(
            f"{network}: dropping the fake class changes the other logits (max difference {diff:.3g}): "
            "a layer after its classifier mixes classes"
        )
    return plain


class SoulyObjective:
    """Souly et al. (ICCV 2017): the network is the (K + 1)-class discriminator; a generator makes fakes."""

    def __init__(
        self,
        unlabelled: _Unlabelled,
        network: str,
        num_classes: int,
        options: dict[str, Any],
        crop: tuple[int, int],
        device: torch.device,
        z_dim: int = 100,
        width: int = 64,
        lr: float = 2e-4,
    ) -> None:
        self.unlabelled, self.network, self.num_classes, self.options = unlabelled, network, num_classes, options
        self.crop, self.device = crop, device
        self.generator = Generator(crop, z_dim, width).to(device)
        # DCGAN's Adam settings (Radford et al.), which Souly et al. train with
        self.g_optimizer = torch.optim.Adam(self.generator.parameters(), lr=lr, betas=(0.5, 0.999))
        self.batch = unlabelled.batch_size
        self.last: dict[str, float] = {}

    def _noise(self, n: int) -> Tensor:
        return torch.randn(n, self.generator.z_dim, device=self.device)

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, rng: np.random.Generator) -> Tensor:
        xu = self.unlabelled.draw(rng)
        with torch.no_grad():
            fake = self.generator(self._noise(xu.shape[0]))
        out, aux = _main(model(x))
        out_u, _ = _main(model(xu))  # a batch of its own: see HungObjective.loss
        with frozen_bn_statistics(model):
            out_fake, _ = _main(model(fake))
        labelled = F.cross_entropy(out, y, ignore_index=IGNORE_INDEX)
        if aux is not None:
            labelled = labelled + 0.4 * F.cross_entropy(aux, y, ignore_index=IGNORE_INDEX)
        _, real_not_fake = _fake_terms(out_u)
        is_fake, _ = _fake_terms(out_fake)
        loss = labelled + real_not_fake.mean() + is_fake.mean()
        self.last = {
            "labelled": float(labelled),
            "unlabelled": float(real_not_fake.mean()),
            "fake": float(is_fake.mean()),
        }
        return loss

    def after_step(self, model: nn.Module) -> None:
        with frozen_bn_statistics(model):
            out, _ = _main(model(self.generator(self._noise(self.batch))))
        _, looks_real = _fake_terms(out)
        self.g_optimizer.zero_grad(set_to_none=True)
        looks_real.mean().backward()  # type: ignore[no-untyped-call]
        self.g_optimizer.step()
        model.zero_grad(set_to_none=True)  # the generator's step leaves gradients in the discriminator

    def plain(self, model: nn.Module) -> nn.Module:
        return drop_fake_class(model, self.network, self.num_classes, self.options, self.crop)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.state_dict(), "g_optimizer": self.g_optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.g_optimizer.load_state_dict(state["g_optimizer"])


# -- Hung et al.: fully convolutional discriminator on label maps ----------------------------------


class FCDiscriminator(nn.Module):
    """Hung et al.'s discriminator: (N, K, H, W) class probabilities -> (N, 1, H, W) logits of "ground truth"."""

    def __init__(self, num_classes: int, width: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = num_classes
        for cout in (width, width * 2, width * 4, width * 8):
            layers += [nn.Conv2d(cin, cout, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            cin = cout
        layers.append(nn.Conv2d(cin, 1, 4, 2, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(self.body(x), size=x.shape[2:], mode="bilinear", align_corners=False)


class HungObjective:
    """Hung et al. (BMVC 2018): adversarial + confidence-masked self-training losses for the network."""

    def __init__(
        self,
        unlabelled: _Unlabelled,
        num_classes: int,
        device: torch.device,
        semi_start: int,
        lambda_adv: float = 0.01,
        lambda_adv_unlabelled: float = 0.001,
        lambda_semi: float = 0.1,
        t_semi: float = 0.2,
        lr: float = 1e-4,
    ) -> None:
        self.unlabelled, self.num_classes, self.semi_start = unlabelled, num_classes, semi_start
        self.lambda_adv, self.lambda_adv_u, self.lambda_semi, self.t_semi = (
            lambda_adv,
            lambda_adv_unlabelled,
            lambda_semi,
            t_semi,
        )
        self.discriminator = FCDiscriminator(num_classes).to(device)
        self.d_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=(0.9, 0.99))
        self.steps = 0
        self._pred: Tensor | None = None
        self._y: Tensor | None = None
        self.last: dict[str, float] = {}

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, rng: np.random.Generator) -> Tensor:
        xu = self.unlabelled.draw(rng)
        # Labelled and unlabelled images go through in separate batches, as in Hung et al.'s code:
        # in one batch, batch norm lets the labelled loss reach the unlabelled images' features
        # through the batch statistics (measured on the street frames, with the adversarial and
        # self-training weights at 0: held-out mean IU 0.30 against 0.60-0.72 for labelled-only
        # training), a dependence on batch company that evaluation does not have.
        pred, aux = _main(model(x))
        pred_u, _ = _main(model(xu))
        ce = F.cross_entropy(pred, y, ignore_index=IGNORE_INDEX)
        if aux is not None:
            ce = ce + 0.4 * F.cross_entropy(aux, y, ignore_index=IGNORE_INDEX)
        d_l = self.discriminator(F.softmax(pred, dim=1))
        d_u = self.discriminator(F.softmax(pred_u, dim=1))
        adv = F.binary_cross_entropy_with_logits(d_l, torch.ones_like(d_l))
        adv_u = F.binary_cross_entropy_with_logits(d_u, torch.ones_like(d_u))
        loss = ce + self.lambda_adv * adv + self.lambda_adv_u * adv_u
        semi = pred.new_zeros(())
        if self.steps >= self.semi_start:
            # self-training where the discriminator believes the prediction: its own argmax as target
            confident = torch.sigmoid(d_u.detach())[:, 0] > self.t_semi
            target = torch.where(confident, pred_u.detach().argmax(1), IGNORE_INDEX)
            if bool(confident.any()):
                semi = F.cross_entropy(pred_u, target, ignore_index=IGNORE_INDEX)
                loss = loss + self.lambda_semi * semi
        self._pred, self._y = pred.detach(), y
        self.last = {"ce": float(ce), "adv": float(adv), "adv_u": float(adv_u), "semi": float(semi)}
        return loss

    def after_step(self, model: nn.Module) -> None:
        if self._pred is None or self._y is None:
            return
        pred, y = self._pred, self._y
        valid = (y != IGNORE_INDEX).to(pred.dtype)[:, None]
        onehot = F.one_hot(torch.where(y == IGNORE_INDEX, 0, y), self.num_classes).permute(0, 3, 1, 2).to(pred.dtype)
        d_fake = self.discriminator(F.softmax(pred, dim=1))
        d_real = self.discriminator(onehot * valid)
        # ignored pixels carry no ground truth: they count on neither side
        bce = F.binary_cross_entropy_with_logits
        denominator = valid.sum().clamp(min=1)
        d_loss = (bce(d_fake, torch.zeros_like(d_fake), reduction="none") * valid).sum() / denominator
        d_loss = d_loss + (bce(d_real, torch.ones_like(d_real), reduction="none") * valid).sum() / denominator
        self.d_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()  # type: ignore[no-untyped-call]
        self.d_optimizer.step()
        self.last["d"] = float(d_loss)
        self.steps += 1
        self._pred = self._y = None

    def plain(self, model: nn.Module) -> nn.Module:
        return model

    def state_dict(self) -> dict[str, Any]:
        return {
            "discriminator": self.discriminator.state_dict(),
            "d_optimizer": self.d_optimizer.state_dict(),
            "steps": self.steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.discriminator.load_state_dict(state["discriminator"])
        self.d_optimizer.load_state_dict(state["d_optimizer"])
        self.steps = int(state["steps"])


# -- DecoupledNet: image-level labels ---------------------------------------------------------------


class DecoupledObjective:
    """DecoupledNet: classification loss on every image, segmentation loss on the pixel-labelled ones."""

    def __init__(
        self,
        image_labelled: list[tuple[np.ndarray, np.ndarray]],
        batch_size: int,
        spec: InputSpec,
        crop: tuple[int, int],
        scale: tuple[float, float],
        flip: bool,
        device: torch.device,
    ) -> None:
        self.pairs, self.batch_size, self.spec = image_labelled, batch_size, spec
        self.crop, self.scale, self.flip, self.device = crop, scale, flip, device
        self.last: dict[str, float] = {}

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, rng: np.random.Generator) -> Tensor:
        from .models.decoupled import DecoupledNet, decoupled_losses

        if not isinstance(model, DecoupledNet):
            raise ConfigError(f"image-level labels train DecoupledNet only, not {type(model).__name__}")
        pixel = torch.ones(x.shape[0], dtype=torch.bool)
        if self.pairs:
            chosen = rng.choice(len(self.pairs), size=min(self.batch_size, len(self.pairs)), replace=False)
            crops = [augment(self.pairs[i][0], self.pairs[i][1], rng, self.crop, self.scale, self.flip) for i in chosen]
            x = torch.cat([x, batch_tensor([c[0] for c in crops], self.spec).to(self.device)])
            yi = torch.from_numpy(np.stack([c[1] for c in crops]).astype(np.int64)).to(self.device)
            y = torch.cat([y, yi])
            pixel = torch.cat([pixel, torch.zeros(len(crops), dtype=torch.bool)])
        seed = int(rng.integers(2**31))
        cls_loss, seg_loss = decoupled_losses(model, x, y, pixel, torch.Generator().manual_seed(seed))
        self.last = {"classification": float(cls_loss), "segmentation": float(seg_loss)}
        return cls_loss + seg_loss

    def after_step(self, model: nn.Module) -> None:
        return None

    def plain(self, model: nn.Module) -> nn.Module:
        return model

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


def make_objective(
    mode: str | None,
    network: str,
    num_classes: int,
    options: dict[str, Any],
    unlabeled: list[str],
    image_labelled: list[SegDataset],
    size: tuple[int, int],
    crop: tuple[int, int],
    scale: tuple[float, float],
    flip: bool,
    batch_size: int,
    semi_start: int,
    spec: InputSpec,
    device: torch.device,
) -> Objective | None:
    """The objective for these flags (None: plain training); every flag combination is checked here."""
    if mode is not None and mode not in MODES:
        raise ConfigError(f"--semi: unknown mode '{mode}' (known: {', '.join(MODES)})")
    if network == "decouplednet":
        if unlabeled or mode is not None:
            raise ConfigError(
                "decouplednet learns from image-level labels: give --image-labelled DIR, not --unlabeled/--semi"
            )
        pairs = []
        for ds in image_labelled:
            for i in range(len(ds)):
                image, mask = ds.load(i)
                pairs.append(
                    (
                        cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR),
                        _resized_mask(mask, size),
                    )
                )
        return DecoupledObjective(pairs, batch_size, spec, crop, scale, flip, device)
    if image_labelled:
        raise ConfigError(f"--image-labelled: image-level labels train decouplednet only, not {network}")
    if not unlabeled:
        if mode is not None:
            raise ConfigError(f"--semi {mode} needs --unlabeled DIR")
        return None
    if mode is None:
        raise ConfigError(f"--unlabeled needs --semi ({' or '.join(MODES)})")
    paths = [p for root in unlabeled for p in unlabeled_images(root)]
    pool = _Unlabelled(load_unlabeled(paths, size), batch_size, spec, crop, scale, flip, device)
    if mode == "souly":
        mixing = mixing_layers(network, num_classes, options)
        if mixing:
            raise ConfigError(
                f"--semi souly: {network}'s trainable layer(s) {', '.join(mixing)} map classes to classes, so "
                "the fake class could not be dropped exactly after training"
                + (" (--option fixed_upsampling=True freezes them)" if network.startswith("fcn") else "")
            )
        return SoulyObjective(pool, network, num_classes, options, crop, device)
    return HungObjective(pool, num_classes, device, semi_start)


def _resized_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from .postprocess import resize_labels

    return resize_labels(mask, size[1], size[0])
