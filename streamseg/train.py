"""`streamseg train`: pixel-wise cross-entropy training of zoo networks.

Loss is averaged over labelled pixels (ignore index 255) with optional class weights; paired
augmentation (scale, crop, flip; masks nearest); SGD with the poly schedule of the DeepLab/PSPNet
papers or AdamW; checkpoints every epoch (atomic) with ``--resume``; CPU or CUDA.

Semi-supervised modes (:mod:`streamseg.semi`): ``unlabeled`` folders with ``semi`` "souly" (a
generator and the network as a (K + 1)-class discriminator; the checkpoint holds the K-class
network) or "hung" (a fully convolutional discriminator on label maps), and ``image_labelled``
datasets for DecoupledNet. They change the loss of each step; the loop is this one.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .contract import InputSpec
from .datasets import IGNORE_INDEX, SegDataset, augment, open_dataset
from .errors import ConfigError
from .evaluate import ConfusionMatrix, Scores, scores
from .maskap import MaskAP
from .models import build, network_info
from .models._torch import F, nn, torch
from .models.checkpoint import CheckpointMeta, input_spec, read_checkpoint, save_checkpoint
from .overlay import voc_colors
from .postprocess import resize_labels
from .preprocess import preprocess
from .progress import Steps
from .semi import make_objective

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    network: str
    data: list[str]
    out: Path
    epochs: int = 50
    batch_size: int = 4
    lr: float = 0.01
    optimizer: str = "sgd"  # sgd (momentum 0.9, poly) | adamw (poly too)
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    size: tuple[int, int] = (256, 448)  # images are resized to this (H, W) before augmentation
    crop: tuple[int, int] | None = None  # random crop (H, W); default: size
    scale: tuple[float, float] = (0.75, 1.25)
    flip: bool = True
    class_weights: list[float] | None = None
    aux_weight: float = 0.4
    options: dict[str, object] = field(default_factory=dict)  # network builder options
    pretrained_backbone: str | None = None
    resume: bool = False
    device: str = "auto"
    seed: int = 0
    progress: bool = True
    unlabeled: list[str] = field(default_factory=list)  # folders of images without masks
    semi: str | None = None  # souly | hung, with unlabeled
    image_labelled: list[str] = field(default_factory=list)  # datasets whose masks give image-level labels only
    semi_start: float = 0.25  # hung: fraction of the steps before self-training starts (paper: 5,000 of 20,000)


def _to_tensor(images: list[np.ndarray], spec: InputSpec) -> torch.Tensor:
    """BGR uint8 images (all one size) -> the model's input batch, by the function serving uses, so
    training and serving cannot drift. Training crops keep their own size; nothing is resized."""
    h, w = images[0].shape[:2]
    return torch.from_numpy(preprocess(images, spec.model_copy(update={"height": h, "width": w})))


def _resize_pair(image: np.ndarray, mask: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    h, w = size
    return (
        cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR),
        resize_labels(mask, w, h),
    )


def predict(model: nn.Module, image: np.ndarray, spec: InputSpec, device: torch.device) -> np.ndarray:
    """Class map at the image's own size: resize in (as serving does), argmax, nearest-resize out."""
    x = torch.from_numpy(preprocess([image], spec)).to(device)
    with torch.inference_mode():
        out = model(x)
        out = out[0] if isinstance(out, tuple) else out
        labels = out.argmax(1)[0].to(torch.uint8).cpu().numpy()
    return resize_labels(labels, image.shape[1], image.shape[0])


def evaluate_model(model: nn.Module, dataset: SegDataset, meta: CheckpointMeta, device: torch.device) -> Scores:
    model.eval()
    cm = ConfusionMatrix(meta.num_classes)
    spec = input_spec(meta)
    for i in range(len(dataset)):
        image, mask = dataset.load(i)
        cm.update(mask, predict(model, image, spec, device))
    return scores(cm.matrix)


def train(cfg: TrainConfig) -> Scores | MaskAP:
    """Train, checkpoint every epoch to ``cfg.out/last.pt``, return the scores on the training data."""
    info = network_info(cfg.network)
    if info.task == "instances":
        from .train_instances import train_instances

        return train_instances(cfg)
    datasets = [open_dataset(d) for d in cfg.data]
    names = datasets[0].class_names
    for ds in datasets[1:]:
        if ds.class_names != names:
            raise ConfigError(f"dataset {ds.root}: class names differ from {datasets[0].root}")
    if names is None:
        raise ConfigError(f"dataset {datasets[0].root}: class_names.txt is required for training")
    num_classes = len(names)
    if not 0 <= cfg.semi_start <= 1:
        raise ConfigError(f"semi_start: a fraction of the steps, 0..1, got {cfg.semi_start}")
    if info.fixed_input and cfg.size != info.input_size:
        raise ConfigError(f"{cfg.network} works only at {info.input_size[0]}x{info.input_size[1]} (--size)")
    torch.manual_seed(cfg.seed)  # the initial weights; each epoch reseeds below
    device = torch.device("cuda" if cfg.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    if cfg.device == "cuda" and device.type != "cuda":
        raise ConfigError("--device cuda: torch sees no CUDA device")
    options = dict(cfg.options)
    if cfg.pretrained_backbone:
        options["pretrained_backbone"] = cfg.pretrained_backbone
    image_labelled = [open_dataset(d) for d in cfg.image_labelled]
    for ds in image_labelled:
        if ds.class_names is not None and ds.class_names != names:
            raise ConfigError(f"--image-labelled {ds.root}: class names differ from {datasets[0].root}")
    meta = CheckpointMeta(
        cfg.network,
        num_classes,
        list(names),
        voc_colors(num_classes),
        cfg.size[0],
        cfg.size[1],
        {k: v for k, v in options.items() if k != "pretrained_backbone"},
        source=f"streamseg train on {', '.join(cfg.data)}"
        + (f", unlabelled {', '.join(cfg.unlabeled)} ({cfg.semi})" if cfg.unlabeled else "")
        + (f", image-labelled {', '.join(cfg.image_labelled)}" if cfg.image_labelled else ""),
    )
    spec = input_spec(meta)  # what the sidecar will tell the pipeline: layout, color, mean, std
    crop = cfg.crop or cfg.size
    samples = [(di, i) for di, ds in enumerate(datasets) for i in range(len(ds))]
    steps_per_epoch = max(1, math.ceil(len(samples) / cfg.batch_size))
    total_steps = cfg.epochs * steps_per_epoch
    objective = make_objective(
        cfg.semi,
        cfg.network,
        num_classes,
        {k: v for k, v in options.items() if k != "pretrained_backbone"},
        cfg.unlabeled,
        image_labelled,
        cfg.size,
        crop,
        cfg.scale,
        cfg.flip,
        cfg.batch_size,
        round(total_steps * cfg.semi_start),
        spec,
        device,
    )
    # Souly et al.: the network is trained as a discriminator with one more class, "fake"
    model = build(cfg.network, num_classes + (cfg.semi == "souly"), **options).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer: torch.optim.Optimizer
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "adamw":
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        raise ConfigError(f"--optimizer: unknown '{cfg.optimizer}' (sgd, adamw)")
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: (1 - min(step, total_steps - 1) / total_steps) ** cfg.poly_power
    )
    start_epoch = 0
    last = cfg.out / "last.pt"
    if cfg.resume:
        if not last.is_file():
            raise ConfigError(f"--resume: no checkpoint at {last}")
        state = read_checkpoint(last)
        if objective is not None and "semi" not in state:
            raise ConfigError(f"--resume: {last} was not trained in this semi-supervised mode")
        model.load_state_dict(state.get("train_model", state["model"]))
        if objective is not None:
            objective.load_state_dict(state["semi"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch = int(state["epoch"])
        log.info("resumed from %s at epoch %d", last, start_epoch)
    weight = torch.tensor(cfg.class_weights, dtype=torch.float32, device=device) if cfg.class_weights else None
    if weight is not None and weight.numel() != num_classes:
        raise ConfigError(f"--class-weights: {weight.numel()} weights for {num_classes} classes")
    if weight is not None and objective is not None:
        raise ConfigError("--class-weights: not used by the semi-supervised losses (--unlabeled, decouplednet)")
    cache = [[_resize_pair(*ds.load(i), cfg.size) for i in range(len(ds))] for ds in datasets]
    bar = Steps((cfg.epochs - start_epoch) * steps_per_epoch, f"train {cfg.network}", "step", log, cfg.progress)
    loss_value = float("nan")
    for epoch in range(start_epoch, cfg.epochs):
        # Every epoch draws from its own seeds, so a resumed run goes on exactly as an unbroken one.
        rng = np.random.default_rng([cfg.seed, epoch])
        torch.manual_seed(cfg.seed * 100_003 + epoch)
        model.train()
        order = rng.permutation(len(samples))
        for s in range(steps_per_epoch):
            chosen = [samples[j] for j in order[s * cfg.batch_size : (s + 1) * cfg.batch_size]]
            pairs = [augment(cache[di][i][0], cache[di][i][1], rng, crop, cfg.scale, cfg.flip) for di, i in chosen]
            x = _to_tensor([p[0] for p in pairs], spec).to(device)
            y = torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.int64)).to(device)
            if objective is not None:
                loss = objective.loss(model, x, y, rng)
            elif isinstance(out := model(x), tuple):  # main + auxiliary head (PSPNet)
                loss = F.cross_entropy(out[0], y, weight=weight, ignore_index=IGNORE_INDEX)
                loss = loss + cfg.aux_weight * F.cross_entropy(out[1], y, weight=weight, ignore_index=IGNORE_INDEX)
            else:
                loss = F.cross_entropy(out, y, weight=weight, ignore_index=IGNORE_INDEX)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            scheduler.step()
            if objective is not None:
                objective.after_step(model)
            loss_value = float(loss.detach())
            parts = "".join(f" {k} {v:.4f}" for k, v in objective.last.items()) if objective is not None else ""
            bar.update(text=f"epoch {epoch + 1} loss {loss_value:.4f}{parts}")
        plain = model if objective is None else objective.plain(model)
        extra = {} if objective is None else {"semi": objective.state_dict()}
        if plain is not model:  # the K-class network is saved; resuming needs the one trained
            extra["train_model"] = model.state_dict()
        save_checkpoint(
            last,
            plain,
            meta,
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(),
            epoch=epoch + 1,
            loss=loss_value,
            **extra,
        )
    bar.close()
    plain = model if objective is None else objective.plain(model)
    result = evaluate_model(plain, _concat(datasets), meta, device)
    log.info("final loss %.4f, mean IU on the training data %.4f", loss_value, result.mean_iu)
    return result


def _concat(datasets: list[SegDataset]) -> SegDataset:
    return SegDataset(datasets[0].root, tuple(s for ds in datasets for s in ds.samples), datasets[0].class_names)
