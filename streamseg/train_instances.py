"""`streamseg train maskrcnn`: training an instance network (torchvision's Mask R-CNN losses: RPN
objectness and box regression, box classification and regression, per-class mask BCE).

Images are resized to ``--size`` (masks nearest), exactly as serving resizes frames, so the model
never rescales inside; augmentation is a horizontal flip (``--no-flip`` turns it off). SGD or AdamW
with the poly schedule, checkpoints every epoch, scores on the training data at the end: mask AP.
"""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np

from .datasets import InstanceDataset, InstanceTarget, open_instance_dataset, target_from_masks
from .errors import ConfigError
from .maskap import MaskAP, MaskAPAccumulator
from .models import build
from .models._torch import nn, torch
from .models.checkpoint import CheckpointMeta, input_spec, read_checkpoint, save_checkpoint
from .overlay import voc_colors
from .preprocess import preprocess
from .progress import Steps
from .train import TrainConfig

log = logging.getLogger(__name__)

# The contract of an instance network's input: RGB in 0..1 (the ImageNet normalisation is inside
# torchvision's model), so the sidecar says mean 0, std 255 on the 0..255 scale.
MEAN, STD = (0.0, 0.0, 0.0), (255.0, 255.0, 255.0)


def _resize(image: np.ndarray, target: InstanceTarget, size: tuple[int, int]) -> tuple[np.ndarray, InstanceTarget]:
    h, w = size
    image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    masks = (
        np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST_EXACT) for m in target.masks])
        if len(target.masks)
        else np.zeros((0, h, w), np.uint8)
    )
    return image, target_from_masks(masks, target.labels)  # boxes anew; an object lost to the resize goes


def _flip(image: np.ndarray, target: InstanceTarget) -> tuple[np.ndarray, InstanceTarget]:
    return np.ascontiguousarray(image[:, ::-1]), target_from_masks(
        np.ascontiguousarray(target.masks[:, :, ::-1]), target.labels
    )


def _torch_target(t: InstanceTarget, device: torch.device) -> dict[str, torch.Tensor]:
    return {
        "boxes": torch.from_numpy(t.boxes).to(device),
        "labels": torch.from_numpy(t.labels).to(device),
        "masks": torch.from_numpy(t.masks).to(device),
    }


def predict_instances(
    model: nn.Module, image: np.ndarray, meta: CheckpointMeta, device: torch.device
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, scores, masks as uint8 (K, H, W) at the image's size): resized in as serving does,
    mask probabilities resized back bilinearly and thresholded at 0.5."""
    x = torch.from_numpy(preprocess([image], input_spec(meta))).to(device)
    model.eval()
    with torch.inference_mode():
        (out,) = model([x[0]])
    h, w = image.shape[:2]
    probs = out["masks"][:, 0].cpu().numpy()
    masks = (
        np.stack([cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR) >= 0.5 for p in probs])
        if len(probs)
        else np.zeros((0, h, w), bool)
    )
    return out["labels"].cpu().numpy(), out["scores"].cpu().numpy(), masks.astype(np.uint8)


def evaluate_instances(
    model: nn.Module, datasets: list[InstanceDataset], meta: CheckpointMeta, device: torch.device
) -> MaskAP:
    acc = MaskAPAccumulator()
    for ds in datasets:
        for i in range(len(ds)):
            image, target = ds.load(i)
            acc.update(target, *predict_instances(model, image, meta, device))
    return acc.result()


def train_instances(cfg: TrainConfig) -> MaskAP:
    """Train an instance network; checkpoint to ``cfg.out/last.pt``; return mask AP on the training data."""
    datasets = [open_instance_dataset(d) for d in cfg.data]
    names = datasets[0].class_names
    for ds in datasets[1:]:
        if ds.class_names != names:
            raise ConfigError(f"dataset {ds.root}: class names differ from {datasets[0].root}")
    if cfg.class_weights:
        raise ConfigError(f"--class-weights: not used by {cfg.network} (its losses are torchvision's)")
    torch.manual_seed(cfg.seed)
    device = torch.device("cuda" if cfg.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    if cfg.device == "cuda" and device.type != "cuda":
        raise ConfigError("--device cuda: torch sees no CUDA device")
    options = {"height": cfg.size[0], "width": cfg.size[1], **cfg.options}
    if cfg.pretrained_backbone:
        options["pretrained_backbone"] = cfg.pretrained_backbone
    model = build(cfg.network, len(names), **options).to(device)
    meta = CheckpointMeta(
        cfg.network,
        len(names),
        list(names),
        voc_colors(len(names)),
        cfg.size[0],
        cfg.size[1],
        {k: v for k, v in options.items() if k != "pretrained_backbone"},
        mean=MEAN,
        std=STD,
        source=f"streamseg train on {', '.join(cfg.data)}",
    )
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer: torch.optim.Optimizer
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "adamw":
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        raise ConfigError(f"--optimizer: unknown '{cfg.optimizer}' (sgd, adamw)")
    cache = [_resize(*ds.load(i), cfg.size) for ds in datasets for i in range(len(ds))]
    steps_per_epoch = max(1, math.ceil(len(cache) / cfg.batch_size))
    total_steps = cfg.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: (1 - min(step, total_steps - 1) / total_steps) ** cfg.poly_power
    )
    start_epoch = 0
    last = cfg.out / "last.pt"
    if cfg.resume:
        if not last.is_file():
            raise ConfigError(f"--resume: no checkpoint at {last}")
        state = read_checkpoint(last)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch = int(state["epoch"])
    spec = input_spec(meta)
    bar = Steps((cfg.epochs - start_epoch) * steps_per_epoch, f"train {cfg.network}", "step", log, cfg.progress)
    loss_value = float("nan")
    for epoch in range(start_epoch, cfg.epochs):
        rng = np.random.default_rng([cfg.seed, epoch])
        torch.manual_seed(cfg.seed * 100_003 + epoch)
        model.train()
        order = rng.permutation(len(cache))
        for s in range(steps_per_epoch):
            chosen = [cache[j] for j in order[s * cfg.batch_size : (s + 1) * cfg.batch_size]]
            pairs = [_flip(*p) if cfg.flip and rng.random() < 0.5 else p for p in chosen]
            x = torch.from_numpy(preprocess([p[0] for p in pairs], spec)).to(device)
            losses = model(list(x), [_torch_target(p[1], device) for p in pairs])
            loss = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[union-attr]
            # from-scratch trunks on a few images: an early step's spike must not blow the weights up
            nn.utils.clip_grad_norm_(params, 10.0)
            optimizer.step()
            scheduler.step()
            loss_value = float(loss.detach())  # type: ignore[union-attr]
            bar.update(text=f"epoch {epoch + 1} loss {loss_value:.4f}")
        save_checkpoint(
            last,
            model,
            meta,
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(),
            epoch=epoch + 1,
            loss=loss_value,
        )
    bar.close()
    result = evaluate_instances(model, datasets, meta, device)
    log.info("final loss %.4f, mask AP %.4f, AP50 %.4f on the training data", loss_value, result.ap, result.ap50)
    return result
