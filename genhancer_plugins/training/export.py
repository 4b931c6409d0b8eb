"""The export: LoRA merged, the encoder written in its library's layout, read
back and compared with the trained encoder before it is moved into place."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any, Callable

import torch

from genhancer_plugins import __version__
from genhancer_plugins.interfaces import Encoder
from genhancer_plugins.training.lora import merge_lora
from genhancer_plugins.util.dtypes import torch_dtype
from genhancer_plugins.util.errors import RunError
from genhancer_plugins.util.files import respect_umask, write_json

EXPORT_TOLERANCE = 1e-4


def export_encoder(encoder: Encoder, probe: torch.Tensor, export_dir: Path, dtype_name: str, recipe_name: str,
                   recipe_yaml: str, log: Callable[[str], None]) -> dict[str, Any]:
    """Merge, write ``export_dir`` (through ``export.tmp``), reload and compare on ``probe``.

    With a ``dtype`` below float32 the trained weights are rounded first (training
    is over), and the reload must match the rounded encoder."""
    encoder.eval()
    with torch.no_grad():
        before = encoder(probe).global_token.float()
    merge_lora(encoder)
    dtype = torch_dtype(dtype_name)
    info: dict[str, Any] = {"directory": str(export_dir), "dtype": dtype_name}
    if dtype != torch.float32:
        with torch.no_grad():
            for param in encoder.parameters():
                param.copy_(param.to(dtype).float())
            rounded = encoder(probe).global_token.float()
        info["rounding_max_abs_diff"] = float((before - rounded).abs().max())
        before = rounded
    tmp = export_dir.with_name(export_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    encoder.save_pretrained(tmp, dtype=dtype)
    try:
        reloaded = encoder.reload(tmp)
    except NotImplementedError as exc:
        log(f"warning: export check skipped: {exc}")
        diff = None
    else:
        reloaded.to(probe.device).float().eval()
        with torch.no_grad():
            after = reloaded(probe).global_token.float()
        if after.shape != before.shape:
            raise RunError(f"the exported encoder gives {tuple(after.shape)} global tokens, the trained one {tuple(before.shape)}; "
                           f"kept in {tmp} (the trained weights stay in the last stage's final/)")
        diff = float((before - after).abs().max())
        if not math.isfinite(diff) or not bool(torch.isfinite(before).all()):  # NaN compares as "not greater": test it first
            raise RunError(f"the exported encoder's outputs are not finite (NaN or inf): training diverged; nothing was exported "
                           f"(kept in {tmp}); lower the learning rate and train again from a checkpoint before it diverged")
        if diff > EXPORT_TOLERANCE:
            raise RunError(f"exported encoder differs from the trained one by {diff:.2e} (> {EXPORT_TOLERANCE:g}); kept in {tmp}")
    info["max_abs_diff"] = diff
    described = encoder.describe()
    metadata = {
        "genhancer_version": __version__,
        "recipe": recipe_name,
        "encoder": described,
        # Image-text evaluation of a vision-only export needs the text tower it came from.
        "text_tower_from": encoder.text_tower_source(),
        "export_check_max_abs_diff": diff,
        "dtype": dtype_name,
    }
    write_json(tmp / "genhancer.json", metadata)
    (tmp / "README.md").write_text(model_card(recipe_name, described, encoder.pretrained_source(), recipe_yaml))
    respect_umask(tmp)  # weights included: a team on shared storage reads the export like the rest of the run
    if export_dir.exists():
        shutil.rmtree(export_dir)
    tmp.rename(export_dir)
    log(f"export: {export_dir} (reloaded and matched, max |diff| {diff:.1e})" if diff is not None else f"export: {export_dir}")
    return info


def model_card(name: str, described: dict[str, Any], source: str | None, recipe_yaml: str) -> str:
    """The export's own card; `genhancer push` writes a fuller one (genhancer_plugins.commands.push) with the
    evaluations and the MLLM families the tower is a drop-in for."""
    facts = "\n".join(f"- {key}: `{value}`" for key, value in described.items())
    origin = f"`{source}`" if source else "randomly initialised weights (a test/demo configuration)"
    return f"""---
library_name: transformers
tags: [genhancer, vision]
---
# {name}: a GenHancer-enhanced vision encoder

Post-trained from {origin} with GenHancer: a lightweight denoiser reconstructed each
image from the encoder's global token only, first with the encoder frozen, then with
the encoder adapted through LoRA (merged into these weights).

{facts}

Load it with plain transformers, for example:

```python
from transformers import AutoModel, AutoImageProcessor
model = AutoModel.from_pretrained("path/to/this/directory")
processor = AutoImageProcessor.from_pretrained("path/to/this/directory")
```

Which MLLMs take it as their vision tower (LLaVA-1.5's `--vision_tower` takes CLIP towers only): the
project README's "Which tower goes where", or the card `genhancer push` writes.

## Recipe
```yaml
{recipe_yaml}```
"""
