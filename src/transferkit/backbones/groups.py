"""Split any network into named layer groups, input side first.

Most pretrained trunks are "a stem, a stack of repeated blocks, a neck". Finding the longest
``nn.ModuleList`` gives the blocks; what is registered before them on the path from the root is the
stem, what comes after is the neck. This works for BERT-like encoders, ViTs, Whisper and most timm
models without per-architecture tables.
"""

from __future__ import annotations

from torch import nn


def find_blocks(root: nn.Module) -> tuple[str, nn.ModuleList]:
    """The longest ``nn.ModuleList`` with parameters inside ``root`` (ties: the first found)."""
    best: tuple[str, nn.ModuleList] | None = None
    for name, module in root.named_modules():
        stack = isinstance(module, nn.ModuleList) and len(module) > 1 and any(True for _ in module.parameters())
        if stack and (best is None or len(module) > len(best[1])):
            best = (name, module)
    if best is None:
        raise ValueError(f"{type(root).__name__} has no stack of blocks to split into layer groups")
    return best


def layer_groups_around_blocks(root: nn.Module, blocks_path: str | None = None) -> list[tuple[str, nn.Module]]:
    """``[("stem", ...), ("block0", ...), ..., ("neck", ...)]`` covering every parameter once.

    Args:
        root: the trunk.
        blocks_path: dotted path of the block list; found automatically when omitted.
    """
    if blocks_path is None:
        blocks_path, blocks = find_blocks(root)
    else:
        blocks = root.get_submodule(blocks_path)
        assert isinstance(blocks, nn.ModuleList)
    stem, neck = nn.ModuleList(), nn.ModuleList()
    parent = root
    for part in blocks_path.split("."):
        direct = list(parent.parameters(recurse=False))  # e.g. wav2vec2's masked_spec_embed
        if direct:
            stem.append(nn.ParameterList(direct))
        before = True
        for child_name, child in parent.named_children():
            if child_name == part:
                before = False
                continue
            (stem if before else neck).append(child)
        parent = parent.get_submodule(part)
    groups: list[tuple[str, nn.Module]] = [("stem", stem)]
    groups += [(f"block{i}", block) for i, block in enumerate(blocks)]
    if any(True for _ in neck.parameters()):
        groups.append(("neck", neck))
    return groups
