"""Torch modules for the network learners: a small CNN, an MLP, ResNet-18 and logistic regression.

Every module splits into ``features(x) -> h`` (the penultimate, "latent" representation that the
regularisers of docs/science.md §8 act on) and ``head(h) -> logits``; ``forward`` is their composition.
Inputs are (n, C, H, W) float tensors. The small CNN uses GroupNorm, not BatchNorm, so Opacus can
compute per-sample gradients for it without changing the architecture; ResNet-18 keeps torchvision's
BatchNorm unless DP-SGD is on, where Opacus's ``ModuleValidator.fix`` swaps it for GroupNorm.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock


class LatentModel(nn.Module):
    """Base: ``forward(x) = head(features(x))``."""

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def head(self, h: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class AveragePoolTo(nn.Module):
    """Average pooling to a fixed ``size`` × ``size`` grid: ``nn.AdaptiveAvgPool2d``'s windows
    (start ⌊i·H/size⌋, end ⌈(i+1)·H/size⌉), computed so that the backward pass is deterministic on
    CUDA, where torch has no deterministic ``AdaptiveAvgPool2d`` backward: an ``avg_pool2d`` when
    the size divides the input, else a product with fixed averaging matrices."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self._matrices: dict[tuple, torch.Tensor] = {}  # built once per shape, dtype and device

    def _matrix(self, n: int, like: torch.Tensor) -> torch.Tensor:
        key = (n, like.dtype, like.device)
        if key not in self._matrices:
            m = torch.zeros(self.size, n, dtype=torch.float64)
            for i in range(self.size):
                lo, hi = (i * n) // self.size, -(-((i + 1) * n) // self.size)
                m[i, lo:hi] = 1.0 / (hi - lo)
            self._matrices[key] = m.to(dtype=like.dtype, device=like.device)
        return self._matrices[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % self.size == 0 and w % self.size == 0:
            return nn.functional.avg_pool2d(x, (h // self.size, w // self.size))
        return self._matrix(h, x) @ x @ self._matrix(w, x).T


def _groups(channels: int) -> int:
    """The largest of 8, 4, 2, 1 dividing ``channels`` (GroupNorm needs a divisor)."""
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


class SmallCNN(LatentModel):
    """conv-GN-ReLU ×2, max-pool 2, conv-GN-ReLU, average pool to 4×4 (`AveragePoolTo`), dense, dense.

    Sized for 8×8 (digits) to 32×32 (CIFAR-10) inputs: 8×8 becomes 4×4 after the pool, 32×32
    becomes 16×16 and is averaged down to 4×4, so the dense part has the same size for both.
    """

    def __init__(self, in_channels: int, n_classes: int, width: int = 16, hidden: int = 64) -> None:
        super().__init__()
        w2 = 2 * width
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.GroupNorm(_groups(width), width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.GroupNorm(_groups(width), width),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, w2, 3, padding=1),
            nn.GroupNorm(_groups(w2), w2),
            nn.ReLU(),
            AveragePoolTo(4),
            nn.Flatten(),
            nn.Linear(w2 * 16, hidden),
            nn.ReLU(),
        )
        self.out = nn.Linear(hidden, n_classes)

    def features(self, x):
        return self.body(x)

    def head(self, h):
        return self.out(h)


class MLP(LatentModel):
    """Flatten, then ``layers`` × (dense, ReLU) of ``hidden`` units, then a dense output."""

    def __init__(self, n_inputs: int, n_classes: int, hidden: int = 64, layers: int = 1) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Flatten()]
        width = n_inputs
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.body = nn.Sequential(*blocks)
        self.out = nn.Linear(width, n_classes)

    def features(self, x):
        return self.body(x)

    def head(self, h):
        return self.out(h)


class LogisticModel(LatentModel):
    """Multinomial logistic regression: one dense layer on the flattened image (h = the pixels)."""

    def __init__(self, n_inputs: int, n_classes: int) -> None:
        super().__init__()
        self.flat = nn.Flatten()
        self.out = nn.Linear(n_inputs, n_classes)

    def features(self, x):
        return self.flat(x)

    def head(self, h):
        return self.out(h)


class OutOfPlaceBasicBlock(BasicBlock):
    """torchvision's residual block with ``out + identity`` instead of ``out += identity``."""

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class SmallImageResNet18(LatentModel):
    """torchvision's ResNet-18 for small images: a 3×3 stride-1 first convolution, no max-pool."""

    def __init__(self, in_channels: int, n_classes: int) -> None:
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18(weights=None, num_classes=n_classes)
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
        for m in net.modules():  # Opacus's backward hooks cannot follow in-place operations
            if isinstance(m, nn.ReLU):
                m.inplace = False
            if type(m) is BasicBlock:
                m.__class__ = OutOfPlaceBasicBlock
        self.fc = net.fc
        net.fc = nn.Identity()
        self.net = net  # forward of the truncated net = conv body + global pool + flatten

    def features(self, x):
        return self.net(x)

    def head(self, h):
        return self.fc(h)


def dp_compatible(model: nn.Module) -> nn.Module:
    """The model with every layer Opacus refuses (BatchNorm) replaced by a supported one."""
    from opacus.validators import ModuleValidator

    if ModuleValidator.is_valid(model):
        return model
    fixed = ModuleValidator.fix(model)
    ModuleValidator.validate(fixed, strict=True)
    return fixed


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
