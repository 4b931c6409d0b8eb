"""``genhancer llava swap`` and ``genhancer llava eval``, added to the command line
through the ``genhancer_add_commands`` hook."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_commands(subparsers: Any) -> None:
    from genhancer_plugins import add_comparison_args

    llava = subparsers.add_parser("llava", help="LLaVA-1.5, -NeXT and -OneVision utilities (LLaVA-1.5's training phases run through `genhancer run`)")
    llava_sub = llava.add_subparsers(dest="llava_command", metavar="COMMAND", required=True)
    swap = llava_sub.add_parser(
        "swap",
        help="put an enhanced tower into an existing LLaVA checkpoint (no retraining)",
        description=("Load a LLaVA-1.5, LLaVA-NeXT or LLaVA-OneVision checkpoint (e.g. llava-hf/llava-1.5-7b-hf, "
                     "llava-hf/llava-v1.6-vicuna-7b-hf, llava-hf/llava-onevision-qwen2-7b-ov-hf), replace its vision tower by "
                     "TOWER and save the result with a consistent processor (NeXT and OneVision keep their AnyRes tiling and "
                     "take the tower's mean and std). The tower must be the model class the checkpoint holds, with its width, "
                     "resolution and patch size; anything else is refused with the reason. The projector is kept as trained "
                     "for the original tower: a quick first look; the paper retrains LLaVA with the enhanced tower."),
    )
    swap.add_argument("--llava", required=True, help="LLaVA-1.5 / -NeXT / -OneVision checkpoint: hub id or directory")
    swap.add_argument("--tower", required=True, help="vision tower directory (a GenHancer export or any CLIP/SigLIP)")
    swap.add_argument("--output", "-o", required=True, help="directory for the new checkpoint (must not exist or be empty)")
    swap.set_defaults(handler=swap_command)
    leval = llava_sub.add_parser(
        "eval",
        help="score LLaVA checkpoints on a benchmark by likelihood, side by side",
        description=("Score LLaVA checkpoints (directories written by `genhancer run` or `genhancer llava swap`, or hub ids "
                     "of LLaVA-1.5, -NeXT or -OneVision such as llava-hf/llava-1.5-7b-hf) with one benchmark evaluator (mmvp_mllm, naturalbench, cv_bench, pope, "
                     "science_qa, hallusion_bench, multiple_choice) and write per-model predictions, summary.json and a table "
                     "under --output. Each answer is the option with the lowest mean negative log-likelihood (the Vicuna v1 prompt, "
                     "or the checkpoint's chat template for NeXT and OneVision where its processor has one)."),
    )
    leval.add_argument("name", help="evaluator name (see `genhancer plugins`), e.g. mmvp_mllm")
    add_comparison_args(leval, "LLaVA checkpoint directory or hub id; repeat to compare (the first is the reference)")
    leval.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto",
                       help="weights' dtype (default auto: bfloat16 on a GPU that has it, else float32)")
    leval.set_defaults(handler=eval_command)


def eval_command(args: argparse.Namespace) -> int:
    import torch

    from genhancer_plugins import compare_models

    from .build import load_llava
    from .scoring import LikelihoodScorer

    def load(source: str, label: str, device: str) -> Any:
        dtype = getattr(torch, args.dtype) if args.dtype != "auto" else None
        if dtype is None:
            dtype = torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
        model, processor = load_llava(source, dtype=dtype)
        return LikelihoodScorer(model, processor, name=label, device=device)

    return compare_models(args, "mllm", load)


def swap_command(args: argparse.Namespace) -> int:
    from genhancer_plugins import RunError

    from .build import load_llava
    from .tower import TowerMismatch, swap_vision_tower

    output = Path(args.output)
    if output.exists() and any(output.iterdir()):
        raise RunError(f"{output} is not empty; choose another --output")
    model, processor = load_llava(args.llava)
    try:
        swap_vision_tower(model, args.tower, args.manager, processor)
    except TowerMismatch as exc:
        raise RunError(str(exc)) from None
    model.save_pretrained(output)
    processor.save_pretrained(output)
    print(f"LLaVA with the tower of {args.tower}: {output}")
    return 0
