"""The shape of the code: layers, cycles, sizes, contracts, plugin hygiene."""

import ast
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, TINY, fake_distribution, genhancer, write_recipe

PACKAGES = [ROOT / "genhancer_plugins", ROOT / "llava_integration", *sorted((ROOT / "plugins").glob("genhancer_*")), ROOT / "tools"]


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every project module (tools/ as ``tools.<name>``)."""
    found = {}
    for package in PACKAGES:
        for path in package.rglob("*.py"):
            parts = list(path.relative_to(package.parent).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules ``name`` imports, at the top or inside functions."""
    out = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                   for child in node.body for n in ast.walk(child)}  # annotations only: never imported at run time
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


#: the core's layers, lowest first: a module imports only its own layer and those below it
LAYERS = {"util": 0, "hookspecs": 1, "interfaces": 1, "events": 1, "registry": 2, "recipe": 3, "evaluation": 4,
          "training": 5, "commands": 6, "cli": 7, "testing": 8}
PUBLIC_MODULES = {"genhancer_plugins", "genhancer_plugins.testing"}


def _layer(module: str) -> int:
    return LAYERS[module.split(".")[1]]


def test_the_core_imports_nothing_above_it():
    modules = _modules()
    offenders = {
        name: sorted(t for t in _imports(name, path, set(modules)) if not t.startswith("genhancer_plugins"))
        for name, path in modules.items() if name.startswith("genhancer_plugins")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_core_module_imports_a_layer_above_its_own():
    modules = _modules()
    upward = {}
    for name, path in modules.items():
        if not name.startswith("genhancer_plugins."):
            continue
        above = sorted(t for t in _imports(name, path, set(modules))
                       if t.startswith("genhancer_plugins.") and _layer(t) > _layer(name))
        if above:
            upward[name] = above
    assert upward == {}
    # the public package itself imports nothing at run time (its names load lazily): `genhancer --help` stays fast
    assert _imports("genhancer_plugins", modules["genhancer_plugins"], set(modules)) == set()


def test_nothing_below_the_engine_imports_it_even_for_typing():
    importers = sorted(name for name, path in _modules().items()
                       if "genhancer_plugins.training.engine" in ast.unparse(ast.parse(path.read_text()))
                       and name != "genhancer_plugins.training.engine")
    below = [name for name in importers if name.startswith("genhancer_plugins.") and _layer(name) <= LAYERS["training"]]
    assert below == [] and importers, importers  # only the commands, the command line, the kit and applications run it


def _plugin_modules() -> dict[str, Path]:
    return {name: path for name, path in _modules().items() if not name.startswith(("genhancer_plugins", "tools"))}


def test_plugins_import_only_the_public_api_and_never_each_other():
    import genhancer_plugins

    public, private, foreign = [], [], []
    for name, path in _plugin_modules().items():
        package = name.split(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [(node.module, [a.name for a in node.names])]
            elif isinstance(node, ast.Import):
                targets = [(a.name, []) for a in node.names]
            else:
                continue
            for module, names in targets:
                top = module.split(".")[0]
                if top == "genhancer_plugins":
                    if module not in PUBLIC_MODULES:
                        private.append(f"{name}: {module}")
                    elif module == "genhancer_plugins":
                        public += [f"{name}: {n}" for n in names if n not in genhancer_plugins.__all__]
                elif (top.startswith("genhancer_") or top == "llava_integration") and top != package:
                    foreign.append(f"{name}: {module}")
    assert private == [] and public == [] and foreign == []


def test_every_public_name_resolves_and_imports_no_torch_until_used():
    code = ("import sys, genhancer_plugins as g; assert 'torch' not in sys.modules and 'pydantic' not in sys.modules; "
            "[getattr(g, n) for n in g.__all__]; print(len(g.__all__))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 40


def test_no_import_cycles_anywhere():
    modules = _modules()
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    # a package importing its own submodules (its __init__ re-exporting them) is not a cycle
    graph = {name: {t for t in targets if not t.startswith(name + ".")} for name, targets in graph.items()}
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(node):  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert cycles == []


def test_no_module_over_450_lines():
    long = {str(path.relative_to(ROOT)): n for path in _modules().values() if (n := len(path.read_text().splitlines())) > 450}
    assert long == {}


def _code_words(path: Path) -> tuple[set[str], set[str]]:
    """(attribute chains like ``params.source``, string constants) of a module's code, docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    attributes, strings = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            owner = node.value.attr if isinstance(node.value, ast.Attribute) else getattr(node.value, "id", "")
            attributes.add(f"{owner}.{node.attr}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            strings.add(node.value)
    return attributes, strings


@pytest.mark.parametrize("module", ["training/engine", "training/stage", "training/export", "training/model", "training/callbacks",
                                    "training/context", "commands/plan", "recipe/build"])
def test_the_engine_reads_no_plugin_specific_field(module):
    attributes, strings = _code_words(ROOT / "genhancer_plugins" / f"{module}.py")
    # a component's params are its plugin's business: the core only validates and dumps them (pydantic's model_*)
    assert not {a for a in attributes if (a.startswith("params.") and not a.startswith("params.model_"))
                or a.split(".")[1] in {"text_model", "vision_model", "visual_projection"}}
    assert not strings & {"source", "has_text_tower", "family", "architecture"}
    identifiers = attributes | {s for s in strings if " " not in s}  # prose (messages, the model card) may name examples
    assert not [w for w in identifiers if re.search(r"\b(llava|clip|siglip|flux|perceiver)\b", w.lower())]


def test_a_misspelled_hook_is_an_error_naming_the_plugin_and_the_hook(tmp_path):
    fake_distribution(tmp_path, "typo_plugin", {"typo": "typo_module"}, {"typo_module": (
        "from genhancer_plugins import hookimpl\n@hookimpl\ndef genhancer_step_ends(step):\n    pass\n")})
    result = genhancer("plugins", extra_path=tmp_path)
    assert "plugin 'typo'" in result.stderr and "genhancer_step_ends, which is no genhancer hook" in result.stderr
    listing = json.loads(genhancer("plugins", "--json", extra_path=tmp_path).stdout)
    assert [f["plugin"] for f in listing["failures"]] == ["typo"]


@pytest.mark.needs_llava
def test_one_plugin_can_be_disabled_by_flag_or_environment(tmp_path):
    on = {c["name"] for c in json.loads(genhancer("plugins", "--json").stdout)["components"]}
    off = json.loads(genhancer("--disable-plugin", "llava", "plugins", "--json").stdout)
    by_env = json.loads(genhancer("plugins", "--json", env_extra={"GENHANCER_DISABLE_PLUGINS": "llava"}).stdout)
    assert {"mmvp_mllm", "llava"} <= on
    for listing in (off, by_env):
        names = {c["name"] for c in listing["components"]}
        assert "mmvp_mllm" not in names and "llava" not in names and "clip" in names and listing["disabled"] == ["llava"]
    # a recipe with a llava section says which phases exist when the plugin is off
    recipe = write_recipe(tmp_path, {**TINY, "llava": {"language_model": "x"}})
    result = genhancer("--disable-plugin", "llava", "validate", str(recipe))
    assert result.returncode == 2 and "llava: unknown field" in result.stderr
    assert "LLaVA-1.5, -NeXT and -OneVision utilities" in genhancer("--help").stdout  # the plugin's command...
    assert "-OneVision utilities" not in genhancer("--disable-plugin", "llava", "--help").stdout  # ...leaves with it


def _abstract_contracts():
    from genhancer_plugins import interfaces

    return [interfaces.Encoder, interfaces.ImageTokenizer, interfaces.Denoiser, interfaces.Conditioner, interfaces.DownstreamPhase]


def _implementations(base):
    import importlib

    for module in ("genhancer_hf_encoders.encoders", "genhancer_flux.vae", "genhancer_flux.rectified_flow", "genhancer_discrete.vq",
                   "genhancer_discrete.perceiver", "genhancer_conditioners.cls", "genhancer_miniature.components",
                   "llava_integration.phase"):
        importlib.import_module(module)
    pending, found = list(base.__subclasses__()), []
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending += cls.__subclasses__()
    return found


@pytest.mark.parametrize("base", _abstract_contracts(), ids=lambda b: b.__name__)
def test_every_implementation_has_the_signatures_of_its_interface(base):
    methods = {name for name, member in vars(base).items() if inspect.isfunction(member) and not name.startswith("_")}
    implementations = _implementations(base)
    assert implementations, f"nothing implements {base.__name__}"
    for cls in implementations:
        for name in methods:
            theirs = getattr(cls, name)
            if theirs is getattr(base, name):
                continue  # inherited as is
            want = [(p.name, p.kind) for p in inspect.signature(getattr(base, name)).parameters.values()]
            got = [(p.name, p.kind) for p in inspect.signature(theirs).parameters.values()]
            assert got[: len(want)] == want, f"{cls.__name__}.{name}{inspect.signature(theirs)} vs {base.__name__}.{name}"
            assert all(p.default is not inspect.Parameter.empty for p in list(inspect.signature(theirs).parameters.values())[len(want):])


def test_denoisers_save_themselves_in_their_own_layout(tmp_path):
    import torch
    from diffusers import FluxTransformer2DModel
    from genhancer_discrete.perceiver import PerceiverDenoiser

    from genhancer_plugins.recipe.build import build_models, resolve_components
    from genhancer_plugins.recipe.schema import load_recipe
    from genhancer_plugins.registry.manager import load_plugins

    manager = load_plugins()
    for name, denoiser in (("flux", {"name": "rectified_flow", "preset": "tiny"}), ("perceiver", {"name": "perceiver", "preset": "tiny"})):
        recipe = {**TINY, "denoiser": denoiser, **({"tokenizer": {"name": "vq", "preset": "tiny"}} if name == "perceiver" else {})}
        built = build_models(resolve_components(load_recipe(write_recipe(tmp_path, recipe, f"{name}.yaml"), manager=manager), manager))["denoiser"]
        built.save_pretrained(tmp_path / name)
        reread = (FluxTransformer2DModel if name == "flux" else PerceiverDenoiser).from_pretrained(tmp_path / name)
        source = built.transformer if name == "flux" else built
        for (key, a), b in zip(source.state_dict().items(), reread.state_dict().values()):
            assert torch.equal(a, b), key
