"""``genhancer push RUN --repo-id ORG/NAME``: a finished run's export on the Hugging Face Hub,
with a model card that carries what produced it.

The card: the recipe (resolved), the data, every evaluation before and after (a table, and
``model-index`` metadata so the Hub shows the scores), the seed, the processes, precision and
hardware, the wall time, and which MLLM families the tower is a drop-in for. Refused: a run
that did not complete, has no export, is in use, or whose export is older than its last
stage. The upload is one commit (``huggingface_hub``'s ``create_commit``: all files or none).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml

from genhancer_plugins.training.rundir import LOCK_FILE
from genhancer_plugins.util.errors import RunError, first_line
from genhancer_plugins.util.tables import markdown_table

#: files of the export that go up (the card is written afresh)
EXPORT_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", "genhancer.json", "tokenizer.json",
                "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt", "spiece.model")


def publishable(run_dir: Path) -> dict[str, Any]:
    """run.json of a finished run whose export is current; a one-line refusal otherwise."""
    summary_path = run_dir / "run.json"
    if not summary_path.is_file():
        raise RunError(f"{run_dir} is not a finished run (no run.json)")
    summary = json.loads(summary_path.read_text())
    if not summary.get("completed"):
        raise RunError(f"{run_dir}: the run did not complete (run.json: completed false); finish it with `genhancer run ... --resume`")
    export = run_dir / "export"
    if not (export / "config.json").is_file() or not (export / "model.safetensors").is_file():
        raise RunError(f"{run_dir}: no export to push ({export} has no config.json and model.safetensors)")
    if (run_dir / LOCK_FILE).exists():
        raise RunError(f"{run_dir} is in use by a run ({run_dir / LOCK_FILE}); push when it has ended")
    final = run_dir / "stage2" / "final" / "model.safetensors"
    if final.is_file() and final.stat().st_mtime > (export / "model.safetensors").stat().st_mtime:
        raise RunError(f"{run_dir}: stage 2 trained after the export was written; `genhancer run ... --resume` exports again")
    return summary


def drop_in(family: str, hidden_size: int, image_size: int, patch_size: int) -> str:
    """Which MLLM families take this tower as it is (README, "Which tower goes where")."""
    tokens = (image_size // patch_size) ** 2
    if family == "clip" and (hidden_size, image_size, patch_size) == (1024, 336, 14):
        return ("LLaVA-1.5: a drop-in `--vision_tower` for its training scripts, and for an existing LLaVA-1.5 or LLaVA-NeXT "
                "checkpoint (`genhancer llava swap`: same width and 576 image tokens per image or tile)")
    if family == "clip":
        return ("LLaVA-1.5's training scripts (`--vision_tower`; they train the projector and LLM for its "
                f"{tokens} image tokens of width {hidden_size}); not an existing LLaVA-1.5 or LLaVA-NeXT checkpoint "
                "without retraining")
    if family == "siglip" and (hidden_size, image_size, patch_size) == (1152, 384, 14):
        return ("an existing LLaVA-OneVision checkpoint (`genhancer llava swap`: its SigLIP so400m/14 @384 shape, 729 tokens "
                "per tile), and the LLaVA-1.5 architecture with a freshly trained projector (GenHancer's `llava:` phase); not "
                "the original LLaVA-1.5 repository, which builds a CLIPVisionModel")
    return (f"the LLaVA-1.5 architecture with a freshly trained projector (GenHancer's `llava:` phase); not the original "
            f"LLaVA-1.5 repository, which builds a CLIPVisionModel (a {family} tower does not fit it), nor an existing "
            "LLaVA-1.5, -NeXT or -OneVision checkpoint without retraining")


def _model_index(name: str, evaluations: dict[str, Any]) -> list[dict[str, Any]]:
    results = []
    for evaluator, entry in evaluations.items():
        enhanced = entry.get("enhanced")
        if not enhanced:
            continue
        metrics = [{"type": "accuracy", "name": key, "value": round(float(value), 2)} for key, value in enhanced.items()]
        results.append({"task": {"type": "zero-shot-image-classification", "name": evaluator},
                        "dataset": {"name": evaluator, "type": evaluator}, "metrics": metrics})
    return [{"name": name, "results": results}] if results else []


def hub_card(run_dir: Path, summary: dict[str, Any], repo_id: str) -> str:
    recipe = summary.get("resolved_recipe", {})
    config = json.loads((run_dir / "export" / "config.json").read_text())
    vision = config.get("vision_config", config)
    described = json.loads((run_dir / "export" / "genhancer.json").read_text()).get("encoder", {}) \
        if (run_dir / "export" / "genhancer.json").is_file() else {}
    family = str(described.get("family") or config.get("model_type", "")).split("_")[0]
    meta = {"library_name": "transformers", "tags": ["genhancer", "vision", family],
            "model-index": _model_index(repo_id.split("/")[-1], summary.get("eval", {}))}
    if not meta["model-index"]:
        del meta["model-index"]
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).rstrip(), "---",
             f"# {repo_id.split('/')[-1]}: a GenHancer-enhanced {family} vision encoder", "",
             f"Post-trained from `{described.get('source') or 'random weights'}` by recipe `{summary.get('recipe')}`: a "
             "lightweight denoiser reconstructed each image from the encoder's class token only, first with the encoder "
             "frozen, then with the encoder adapted through LoRA (merged into these weights).", "",
             f"Drop-in for: {drop_in(family, int(vision.get('hidden_size', 0)), int(vision.get('image_size', 0)), int(vision.get('patch_size', 1)))}.",
             "", "## Evaluation (original encoder vs this one)", ""]
    for evaluator, entry in summary.get("eval", {}).items():
        original, enhanced = entry.get("original", {}), entry.get("enhanced", {})
        rows = [[key, f"{original[key]:.2f}" if key in original else "-", f"{value:.2f}",
                 f"{value - original[key]:+.2f}" if key in original else "-"] for key, value in enhanced.items()]
        lines += [f"**{evaluator}**", "", markdown_table(["metric", "original", "enhanced", "difference"], rows), ""]
    if not summary.get("eval"):
        lines += ["No evaluator ran in this recipe.", ""]
    stages = summary.get("stages", {})
    versions = summary.get("versions", {})
    hardware = summary.get("hardware") or {}
    data = recipe.get("data", {})
    lines += ["## Training", "",
              f"- data: `{data.get('name')}` {json.dumps(data.get('params', {}))}, batch {data.get('batch_size')} per process",
              *(f"- {name}: {stage.get('steps')} steps, final loss {stage.get('final_loss')}" for name, stage in stages.items()),
              f"- seed {recipe.get('train', {}).get('seed', 0)}, {summary.get('num_processes')} process(es), precision "
              f"{summary.get('mixed_precision')}, hardware: {hardware.get('device_name') or hardware.get('device') or 'not recorded'}",
              f"- wall time {summary.get('wall_time_s')} s over {len(summary.get('invocations_s') or [1])} invocation(s)",
              f"- genhancer {versions.get('genhancer')}, torch {versions.get('torch')}, transformers {versions.get('transformers')}",
              f"- pushed {time.strftime('%Y-%m-%d')} by `genhancer push`", "",
              "```python", "from transformers import AutoModel, AutoImageProcessor",
              f'model = AutoModel.from_pretrained("{repo_id}")', f'processor = AutoImageProcessor.from_pretrained("{repo_id}")',
              "```", "", "## Recipe (resolved)", "", "```yaml", yaml.safe_dump(recipe, sort_keys=False).rstrip(), "```", ""]
    return "\n".join(lines)


def files_to_push(run_dir: Path, with_denoiser: bool) -> list[tuple[Path, str]]:
    files = [(run_dir / "export" / name, name) for name in EXPORT_FILES if (run_dir / "export" / name).is_file()]
    if with_denoiser:
        folder = run_dir / "stage2" / "final" / "denoiser"
        if not folder.is_dir():
            raise RunError(f"{run_dir}: --with-denoiser, but {folder} does not exist (a sharded run keeps it in final/model.safetensors; "
                           "a frozen pretrained denoiser is not copied: its weights are its source's)")
        files += [(path, f"denoiser/{path.relative_to(folder)}") for path in sorted(folder.rglob("*")) if path.is_file()]
    return files


def push(run_dir: Path, repo_id: str, private: bool = False, revision: str | None = None, with_denoiser: bool = False,
         dry_run: bool = False) -> dict[str, Any]:
    """Upload (or, ``dry_run``, only prepare) the export; returns the files and the card."""
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise RunError(f"--repo-id {repo_id!r}: expected ORG/NAME (or USER/NAME)")
    summary = publishable(run_dir)
    files = files_to_push(run_dir, with_denoiser)
    card = hub_card(run_dir, summary, repo_id)
    result = {"repo_id": repo_id, "files": [name for _, name in files] + ["README.md"], "card": card, "uploaded": False}
    if dry_run:
        return result
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi()
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for path, name in files]
        operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode()))
        commit = api.create_commit(repo_id, operations=operations, revision=revision,
                                   commit_message=f"GenHancer export of {summary.get('recipe')} ({run_dir.name})")
    except Exception as exc:  # offline, no token, no permission, a network error: one line, nothing half-committed
        raise RunError(f"push to {repo_id}: {type(exc).__name__}: {first_line(exc)} (a commit is all files or none: nothing "
                       "was committed)") from None
    result.update(uploaded=True, url=str(getattr(commit, "commit_url", url)))
    return result
