"""DecoupledNet: Hong, Noh, Han. Decoupled Deep Neural Network for Semi-supervised Semantic
Segmentation. NIPS 2015 (arXiv:1506.04924), as the authors' Caffe nets (HyeonwooNoh/DecoupledNet,
``DecoupledNet_*_inference_deploy.prototxt`` and ``training/00*_train_seg_*.prototxt``).

Two networks, trained with different labels:

* **Classification network** (image-level labels): VGG-16 (``conv1_1`` .. ``conv5_3``, 3x3 + ReLU,
  five 2x2/2 max-poolings that keep their switches), ``fc6`` as a 7x7 convolution (4096),
  ``fc7`` 1x1 (4096), ``cls_score`` 1x1 to the C = K - 1 foreground classes (class 0 is the
  background). The image's class scores are the spatial maximum of the score map (the reference's
  4x4 max pooling over the 4x4 map a 320x320 input gives); trained with a multi-label sigmoid
  cross-entropy.
* **Bridging layers**: the class-specific activation map of class l is the gradient of its score
  with respect to ``pool5``, computed by back-propagation through the classification network:
  the class's ``cls_score`` weights placed at the argmax of its score map, masked by ``fc7``'s
  and ``fc6``'s ReLU, carried back through ``fc7`` and ``fc6`` by transposed convolutions that
  share their weights (the reference's ``*-bp`` layers, learning rate 0). ``pool5`` and that map
  each pass a BatchNorm and are concatenated (1024 channels).
* **Segmentation network** (few pixel-level labels): a deconvolution network (Noh et al., ICCV
  2015): ``fc6_seg`` 7x7 (2048) + BN + ReLU, ``fc7_seg`` 1x1 (2048) + BN + ReLU, ``fc6_deconv``
  7x7 transposed (512) + BN + ReLU, then five stages that unpool with the *classification
  network's* switches and run 3x3 transposed convolutions + BN + ReLU (512, 512, 512 | 512, 512,
  256 | 256, 256, 128 | 128, 64 | 64, 64), and ``seg_score`` 1x1 to 2 channels: background and
  foreground *of the class the bridge was built for*.

Inference (``DecoupledNet_inference.m``): class probabilities p = sigmoid(score); the background
probability comes from one pass whose bridge carries every class with p > ``threshold`` (0.5),
weighted by p; the foreground probability of each such class from a pass whose bridge carries
that class alone, weighted by its p; classes below the threshold get 0; a pixel whose scores sum
to 0 gets 1 for background and every present class; the map is normalised to sum 1 per pixel.

**One pass for all classes.** The reference runs the segmentation network once per present class
(a Python/Matlab loop over a data-dependent set). Here ``forward`` runs it for the background and
*every* class at once, as a batch of N x K bridged inputs, and zeroes the classes below the
threshold with a comparison. The result is the same map; the graph is static (no loop, no
data-dependent shapes), so it exports to ONNX and builds in TensorRT at a fixed cost of K decoder
passes per image, where the reference's cost varies with the number of classes present.
``forward`` returns that normalised score map (N, K, H, W) at the input size; its values are
probabilities, and the pipeline takes their argmax like any network's logits.

Parameters, paper configuration (21 classes, 20 in the classifier): 307,450,390 learned. The
classification network 134,342,484 (VGG-16 convolutions 14,714,688, fc6 102,764,544, fc7
16,781,312, cls_score 81,940); the segmentation network 173,105,858 (fc6_seg 102,762,496, fc7_seg
4,196,352, fc6_deconv 51,380,736, the thirteen 3x3 transposed convolutions and seg_score
14,749,506, BatchNorm scales and shifts 16,768; running statistics are not counted); the bridge
shares the classification weights (the reference's ``*-bp`` layers are copies with learning rate 0) and adds
only its two BatchNorms, 2,048. The paper publishes no count; ``tests/models/test_decoupled.py``
derives it layer by layer.

Departures: max-pooling rounds down (PyTorch's default; the Caffe layers rounded up) and unpooling
is built from standard operators (``layers.pool_with_switches``/``unpool_like``), so any H, W whose
pool5 map is at least ``fc_kernel`` wide works (>= 224 at the paper's 7) and the output has the
input's size. Transposed 3x3 convolutions with padding 1 are used as the reference does (they
equal 3x3 convolutions with flipped kernels). The classification network is trained from scratch
with the segmentation network here (the paper fine-tunes an ImageNet VGG-16 first); training keeps
the two decoupled: the segmentation loss never reaches the classification network (its features,
switches and bridge are detached), as in the reference where the classification layers have
learning rate 0. ``base_channels`` (64) scales every width and ``fc_kernel`` (7) the two 7x7
layers, for tests and small devices.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._torch import F, Tensor, nn, torch
from .layers import pool_with_switches, unpool_like

_VGG16 = ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))  # (block, convs)
# Decoder stages, deepest first: (block, output widths of its transposed convolutions) in units of
# base_channels, from the reference prototxt.
_DECODER = ((5, (8, 8, 8)), (4, (8, 8, 4)), (3, (4, 4, 2)), (2, (2, 1)), (1, (1, 1)))


class _DeconvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 3, padding: int = 1) -> None:
        super().__init__()
        self.deconv = nn.ConvTranspose2d(cin, cout, kernel, padding=padding)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)


@dataclass
class Features:
    """What the classification network hands the bridge and the segmentation network."""

    scores: Tensor  # (N, C) class scores before the sigmoid (spatial max of the score map)
    pool5: Tensor  # (N, 512, h, w)
    switches: list[Tensor]  # pool1 .. pool5 switches
    relu6: Tensor  # (N, 4096, h', w') 1 where fc6 > 0
    relu7: Tensor  # (N, 4096, h', w') 1 where fc7 > 0
    argmax: Tensor  # (N, C, h', w') 1 at the first maximum of each class's score map


def _first_max(score_map: Tensor) -> Tensor:
    """1 at the first (row-major) maximum of each (N, C) map, 0 elsewhere: the max-pooling's switch."""
    n, c, h, w = score_map.shape
    flat = score_map.reshape(n, c, h * w)
    hits = (flat == flat.amax(dim=2, keepdim=True)).to(score_map.dtype)
    return (hits * (hits.cumsum(dim=2) == 1).to(score_map.dtype)).reshape(n, c, h, w)


class DecoupledNet(nn.Module):
    """DecoupledNet: VGG-16 classification network, bridging layers, deconvolution segmentation network."""

    def __init__(
        self, num_classes: int, *, base_channels: int = 64, fc_kernel: int = 7, threshold: float = 0.5
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"DecoupledNet needs a background and at least one class, got {num_classes} classes")
        self.num_classes = num_classes
        self.threshold = threshold
        widths = [base_channels * m for m in (1, 2, 4, 8, 8)]
        cin = 3
        self.conv_names: list[list[str]] = []
        for (block, convs), cout in zip(_VGG16, widths, strict=True):
            names = [f"conv{block}_{i}" for i in range(1, convs + 1)]
            for name in names:
                self.add_module(name, nn.Conv2d(cin, cout, 3, padding=1))
                cin = cout
            self.conv_names.append(names)
        fc = base_channels * 64
        self.fc6 = nn.Conv2d(cin, fc, fc_kernel)
        self.fc7 = nn.Conv2d(fc, fc, 1)
        self.cls_score = nn.Conv2d(fc, num_classes - 1, 1)
        # bridge
        self.pool5_bn = nn.BatchNorm2d(cin)
        self.pool5_bp_bn = nn.BatchNorm2d(cin)
        # segmentation network
        seg = base_channels * 32
        self.fc6_seg = nn.Sequential(nn.Conv2d(2 * cin, seg, fc_kernel), nn.BatchNorm2d(seg), nn.ReLU(inplace=True))
        self.fc7_seg = nn.Sequential(nn.Conv2d(seg, seg, 1), nn.BatchNorm2d(seg), nn.ReLU(inplace=True))
        self.fc6_deconv = _DeconvBNReLU(seg, cin, fc_kernel, padding=0)
        self.deconv_names: list[list[str]] = []
        width = cin
        for block, outs in _DECODER:
            names = []
            for i, mult in enumerate(outs, start=1):
                name = f"deconv{block}_{i}"
                self.add_module(name, _DeconvBNReLU(width, base_channels * mult))
                width = base_channels * mult
                names.append(name)
            self.deconv_names.append(names)
        self.seg_score = nn.Conv2d(width, 2, 1)
        # He initialisation: trained from scratch here, where the reference fine-tunes ImageNet
        # VGG-16 and draws its new layers from N(0, 0.01) (BatchNorm follows each of them).
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.seg_score.weight, std=0.01)

    def classify(self, x: Tensor) -> Features:
        """The classification network's forward pass, keeping what the bridge back-propagates through."""
        switches = []
        for names in self.conv_names:
            for name in names:
                x = F.relu(self.get_submodule(name)(x))
            x, s = pool_with_switches(x)
            switches.append(s)
        fc6 = F.relu(self.fc6(x))
        fc7 = F.relu(self.fc7(fc6))
        score_map = self.cls_score(fc7)
        return Features(
            scores=score_map.amax(dim=(2, 3)),
            pool5=x,
            switches=switches,
            relu6=(fc6 > 0).to(x.dtype),
            relu7=(fc7 > 0).to(x.dtype),
            argmax=_first_max(score_map),
        )

    def activation_maps(self, f: Features, weights: Tensor) -> Tensor:
        """Bridge inputs for P weightings of the classes per image: ``weights`` (N, P, C) -> (N*P, 512, h, w).

        Each is the gradient of sum_c weights[c] * score_c with respect to pool5, by explicit
        back-propagation (transposed convolutions with fc7's and fc6's weights, the ReLU masks), so
        that it exports as ordinary operators.
        """
        n, p, c = weights.shape
        w_cls = self.cls_score.weight.reshape(c, -1)  # (C, 4096)
        # d score_c / d fc7: cls_score's weights at the argmax of the class's score map
        g = torch.einsum("npc,nchw,cd->npdhw", weights, f.argmax, w_cls)
        g = g * f.relu7[:, None]
        g = F.conv_transpose2d(g.reshape(n * p, *g.shape[2:]), self.fc7.weight)
        g = g * f.relu6.repeat_interleave(p, dim=0)
        return F.conv_transpose2d(g, self.fc6.weight)

    def segment(self, f: Features, bridge: Tensor) -> Tensor:
        """Foreground/background logits (N*P, 2, H, W) for P bridge inputs per image (``activation_maps``)."""
        p = bridge.shape[0] // f.pool5.shape[0]
        h = torch.cat([self.pool5_bn(f.pool5).repeat_interleave(p, dim=0), self.pool5_bp_bn(bridge)], dim=1)
        h = self.fc6_deconv(self.fc7_seg(self.fc6_seg(h)))
        for names, switches in zip(self.deconv_names, reversed(f.switches), strict=True):
            h = unpool_like(h, switches.repeat_interleave(p, dim=0))
            for name in names:
                h = self.get_submodule(name)(h)
        out: Tensor = self.seg_score(h)
        return out

    def forward(self, x: Tensor) -> Tensor:
        """Normalised class scores (N, K, H, W): background and every class in one batched pass."""
        f = self.classify(x)
        n, c = f.scores.shape
        prob = torch.sigmoid(f.scores)
        present = (prob > self.threshold).to(prob.dtype)
        eye = torch.eye(c, dtype=prob.dtype, device=prob.device)
        # pass 0: every present class weighted by its probability (background); pass 1 + j: class j alone
        weights = torch.cat([(prob * present)[:, None], prob[:, None, :] * eye[None]], dim=1)
        seg = F.softmax(self.segment(f, self.activation_maps(f, weights)), dim=1)
        seg = seg.reshape(n, c + 1, 2, *seg.shape[2:])
        gate = torch.cat([torch.ones_like(present[:, :1]), present], dim=1)[:, :, None, None]
        score = torch.cat([seg[:, :1, 0], seg[:, 1:, 1]], dim=1) * gate
        # a pixel nobody claims goes to the background and every present class equally
        score = score + gate * (score.sum(dim=1, keepdim=True) <= 0).to(score.dtype)
        return score / score.sum(dim=1, keepdim=True)


def image_labels(masks: Tensor, num_classes: int, ignore_index: int = 255) -> Tensor:
    """Multi-label targets (N, C) from class masks (N, H, W): 1 for each foreground class present."""
    valid = masks != ignore_index
    onehot = F.one_hot(torch.where(valid, masks, 0).long(), num_classes).amax(dim=(1, 2))
    return onehot[:, 1:].to(torch.float32)


def decoupled_losses(
    model: DecoupledNet, x: Tensor, masks: Tensor, pixel_labelled: Tensor, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """(classification loss on every image, segmentation loss on the pixel-labelled ones).

    ``masks`` (N, H, W) give every image's labels (the image-level labels are the classes present);
    ``pixel_labelled`` (N,) bool says whose pixels may be used. As the reference's training layer
    ``SELECT_SEG_BINARY``, each pixel-labelled image with a class present contributes one class,
    drawn at random: the bridge is built for it (weighted by its sigmoid score, as at inference) and
    the target is the binary mask of that class (ignored pixels stay ignored).
    """
    ignore = 255
    f = model.classify(x)
    targets = image_labels(masks, model.num_classes, ignore)
    cls_loss = F.binary_cross_entropy_with_logits(f.scores, targets)
    rows = [i for i in range(x.shape[0]) if bool(pixel_labelled[i]) and bool(targets[i].any())]
    if not rows:
        return cls_loss, cls_loss.new_zeros(())
    chosen = []
    for i in rows:
        present = torch.nonzero(targets[i]).flatten()
        pick = torch.randint(len(present), (1,), generator=generator).item()
        chosen.append(int(present[int(pick)]))
    idx = torch.tensor(rows, device=x.device)
    cls_idx = torch.tensor(chosen, device=x.device)
    # decoupled: nothing of the segmentation loss reaches the classification network
    fd = Features(
        scores=f.scores[idx].detach(),
        pool5=f.pool5[idx].detach(),
        switches=[s[idx].detach() for s in f.switches],
        relu6=f.relu6[idx],
        relu7=f.relu7[idx],
        argmax=f.argmax[idx],
    )
    prob = torch.sigmoid(fd.scores)
    weights = (F.one_hot(cls_idx, model.num_classes - 1).to(prob.dtype) * prob)[:, None]
    with torch.no_grad():
        bridge = model.activation_maps(fd, weights)
    logits = model.segment(fd, bridge)
    m = masks[idx].long()
    binary = torch.where(m == ignore, ignore, (m == (cls_idx + 1)[:, None, None]).long())
    seg_loss = F.cross_entropy(logits, binary, ignore_index=ignore)
    return cls_loss, seg_loss


def decouplednet(
    num_classes: int,
    *,
    pretrained_backbone: str | None = None,
    base_channels: int = 64,
    fc_kernel: int = 7,
    threshold: float = 0.5,
) -> DecoupledNet:
    """DecoupledNet (Hong, Noh, Han, NIPS 2015): VGG-16 classifier bridged to a deconvolution segmenter.

    ``num_classes`` counts the background (class 0); the classifier scores the other ones.
    ``pretrained_backbone``: path to a torchvision ``vgg16`` state dict (convolutions, fc6, fc7).
    """
    model = DecoupledNet(num_classes, base_channels=base_channels, fc_kernel=fc_kernel, threshold=threshold)
    if pretrained_backbone is not None:
        from .backbones import load_backbone_weights

        load_backbone_weights(model, pretrained_backbone, "vgg16")
    return model
