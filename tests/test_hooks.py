"""The hook layer: each plugin called on its own and losing only itself, name clashes,
hooks added by plugins, the loader order, and the engine's callbacks written against
nothing but the hook payloads."""

import json

import pytest
from helpers import TINY, fake_distribution, genhancer, write_recipe

from genhancer_plugins import hookimpl, load_plugins
from genhancer_plugins.testing import run_recipe, tiny_recipe

FAST = {**TINY, "stage1": {"steps": 2, "learning_rate": 1e-3}, "stage2": {"steps": 2, "learning_rate": 1e-3}, "preview": {"images": 0}}
LIFECYCLE = ("genhancer_run_start", "genhancer_stage_start", "genhancer_step_end", "genhancer_stage_end", "genhancer_export_end",
             "genhancer_run_end")


class Recorder:
    """A healthy plugin that notes every lifecycle event it receives."""

    def __init__(self):
        self.events = []

    @hookimpl
    def genhancer_run_start(self, run):
        self.events.append(("run_start", None))

    @hookimpl
    def genhancer_stage_start(self, stage):
        self.events.append(("stage_start", stage.stage))

    @hookimpl
    def genhancer_step_end(self, step):
        self.events.append(("step_end", step.stage))

    @hookimpl
    def genhancer_stage_end(self, stage):
        self.events.append(("stage_end", stage.stage))

    @hookimpl
    def genhancer_export_end(self, export):
        self.events.append(("export_end", export.written))

    @hookimpl
    def genhancer_run_end(self, run, completed, error):
        self.events.append(("run_end", completed, type(error).__name__ if error else None))


ARGUMENTS = {"genhancer_run_start": "run", "genhancer_stage_start": "stage", "genhancer_step_end": "step",
             "genhancer_stage_end": "stage", "genhancer_export_end": "export", "genhancer_run_end": "run, completed, error"}


def _raising(hook: str):
    """A plugin whose only hook, ``hook``, raises (pluggy matches implementations by argument names)."""
    namespace = {}
    exec(f"def {hook}(self, {ARGUMENTS[hook]}):\n    raise RuntimeError('boom in {hook}')", namespace)
    return type("Broken", (), {hook: hookimpl(namespace[hook])})()


@pytest.mark.slow
@pytest.mark.parametrize("hook", LIFECYCLE)
def test_a_plugin_raising_in_a_lifecycle_hook_loses_only_itself(tmp_path, hook, capsys):
    recorder = Recorder()
    summary = run_recipe(write_recipe(tmp_path, FAST), tmp_path / "out", plugins=[(_raising(hook), "broken"), (recorder, "recorder")])
    assert summary["completed"]
    assert ("run_start", None) in recorder.events and ("run_end", True, None) in recorder.events
    assert sum(1 for e in recorder.events if e[0] == "step_end") == 4  # every step of both stages reached the healthy plugin
    err = capsys.readouterr().err
    assert f"failed in {hook}: RuntimeError: boom in {hook}" in err and err.count(f"boom in {hook}") == 1  # said once, then left out


def test_run_end_fires_on_failure_and_export_end_when_the_export_is_skipped(tmp_path):
    recorder = Recorder()
    summary = run_recipe(write_recipe(tmp_path, {**FAST, "export": {"enabled": False}}), tmp_path / "a", plugins=[(recorder, "recorder")])
    assert summary["completed"] and ("export_end", False) in recorder.events and recorder.events[-1] == ("run_end", True, None)

    class Stop:
        @hookimpl
        def genhancer_step_end(self, step):
            raise KeyboardInterrupt  # what Ctrl-C raises between two steps

    recorder = Recorder()
    with pytest.raises(KeyboardInterrupt):
        run_recipe(write_recipe(tmp_path, FAST), tmp_path / "b", plugins=[(Stop(), "stop"), (recorder, "recorder")])
    assert recorder.events[-1] == ("run_end", False, "KeyboardInterrupt")
    assert not (tmp_path / "b" / ".genhancer.lock").exists()


def test_a_plugin_raising_while_adding_commands_loses_only_its_commands(capsys):
    from genhancer_plugins.cli import build_parser

    class Good:
        @hookimpl
        def genhancer_add_commands(self, subparsers):
            subparsers.add_parser("good-command", help="works").set_defaults(handler=lambda args: 0)

    class Bad:
        @hookimpl
        def genhancer_add_commands(self, subparsers):
            subparsers.add_parser("half-added", help="added before the error")
            raise RuntimeError("cannot add commands")

    manager = load_plugins(extra=[(Good(), "good"), (Bad(), "bad")])
    parser = build_parser(manager)
    err = capsys.readouterr().err
    assert "plugin 'bad'" in err and "failed in add commands: RuntimeError: cannot add commands; its commands are unavailable" in err
    help_text = parser.format_help()
    assert "good-command" in help_text and "half-added" not in help_text and "plugins" in help_text
    assert parser.parse_args(["good-command"]).handler(None) == 0
    with pytest.raises(SystemExit):
        parser.parse_args(["half-added"])


def test_genhancer_plugins_still_works_when_a_plugin_cannot_add_commands(tmp_path):
    site = fake_distribution(tmp_path, "cmd_plugin", {"cmds": "cmd_module"}, {"cmd_module": (
        "from genhancer_plugins import hookimpl\n@hookimpl\ndef genhancer_add_commands(subparsers):\n    raise ValueError('no')\n")})
    result = genhancer("plugins", extra_path=site)
    assert result.returncode == 0 and "rectified_flow" in result.stdout
    assert "plugin 'cmds' (entry point 'cmd_module' from cmd_plugin 1.0) failed in add commands: ValueError: no" in result.stderr


def test_a_raising_model_loader_is_left_out_and_the_next_one_answers(tmp_path):
    from genhancer_hf_encoders.encoders import build_encoder
    from genhancer_hf_encoders.params import HFEncoderParams
    from helpers import tiny_encoder_config

    from genhancer_plugins import load_image_text_model

    build_encoder("clip", HFEncoderParams(config=tiny_encoder_config())).save_pretrained(tmp_path / "clip")

    class Broken:
        @hookimpl
        def genhancer_load_image_text_model(self, source, text_from, device):
            raise RuntimeError("loader exploded")

    class Special:
        @hookimpl
        def genhancer_load_image_text_model(self, source, text_from, device):
            return "special model" if source.startswith("special://") else None

    manager = load_plugins(extra=[(Special(), "special"), (Broken(), "broken")])
    # in-process plugins registered last are asked first: Broken, then Special, then the built-in
    assert [n for n in manager._implementers("genhancer_load_image_text_model")][:2] == ["broken", "special"]
    assert load_image_text_model(manager, "special://x") == "special model"
    assert [f.source.plugin for f in manager.failures] == ["broken"] and "loader exploded" in manager.failures[0].error
    model = load_image_text_model(manager, str(tmp_path / "clip"))  # the built-in answers for a real directory
    assert model.image_embeddings is not None
    assert len(manager.failures) == 1  # the broken plugin was left out after its first failure


def test_a_name_two_distributions_register_is_an_error_naming_both_until_a_recipe_chooses(tmp_path):
    site = fake_distribution(tmp_path / "site", "clash_dist", {"clash": "clash_module"}, {"clash_module": (
        "import genhancer_flux\nfrom genhancer_plugins import hookimpl\n"
        "@hookimpl\ndef genhancer_components():\n"
        "    return [s for s in genhancer_flux.genhancer_components() if s.name == 'rectified_flow']\n")})

    def run(*args):
        return genhancer(*args, extra_path=site)

    recipe = write_recipe(tmp_path, TINY)
    refused = run("validate", recipe)
    assert refused.returncode == 2
    assert "denoiser 'rectified_flow' is registered by genhancer 0.1.0 (plugin 'flux') and clash_dist 1.0 (plugin 'clash')" in refused.stderr
    assert "`name: genhancer:rectified_flow` or `name: clash_dist:rectified_flow`" in refused.stderr
    for choice, provider in (("genhancer", "genhancer 0.1.0"), ("clash_dist", "clash_dist 1.0")):
        plan = run("validate", recipe, "--set", f"denoiser.name={choice}:rectified_flow", "--json")
        assert plan.returncode == 0, plan.stderr
        chosen = json.loads(plan.stdout)["components"]["denoiser"]
        assert chosen["provided_by"] == provider and chosen["preset"] == "tiny"  # the section's preset stays with the same component
    listing = run("plugins")
    assert "genhancer:rectified_flow" in listing.stdout and "clash_dist:rectified_flow" in listing.stdout
    assert "is registered by genhancer 0.1.0" in listing.stderr
    # a qualified name of a unique component works too
    assert run("validate", recipe, "--set", "encoder.name=genhancer:clip", "--set", "denoiser.name=genhancer:rectified_flow").returncode == 0


def test_plugins_can_add_hooks_of_their_own():
    class Specs:
        @staticmethod
        def myplugin_scored(score: float) -> None:
            """A hook another plugin offers."""

    from genhancer_plugins.hookspecs import hookspec

    Specs.myplugin_scored = staticmethod(hookspec(Specs.myplugin_scored))

    class Offers:
        @hookimpl
        def genhancer_addhooks(self, pluginmanager):
            pluginmanager.add_hookspecs(Specs)

    class Listens:
        def __init__(self):
            self.scores = []

        @hookimpl
        def myplugin_scored(self, score):
            self.scores.append(score)

    listens = Listens()
    # the listener registers before the plugin that offers its hook: still not "misspelled"
    manager = load_plugins(extra=[(listens, "listens"), (Offers(), "offers")])
    assert manager.failures == []
    manager.notify("myplugin_scored", score=0.5)
    assert listens.scores == [0.5]

    class Typo:
        @hookimpl
        def myplugin_scord(self, score):
            pass

    failed = load_plugins(extra=[(Offers(), "offers"), (Typo(), "typo")])
    assert [f.source.plugin for f in failed.failures] == ["typo"] and "myplugin_scord, which is no genhancer hook" in failed.failures[0].error


@pytest.mark.slow
def test_the_preview_callback_needs_nothing_but_the_hook_payload(tmp_path):
    """Built from a payload assembled by hand (no Run, no training context), the engine's own
    callbacks write the reconstruction grid: a third-party plugin could be this callback."""
    import torch
    from accelerate import Accelerator

    from genhancer_plugins import RunInfo, StageInfo
    from genhancer_plugins.recipe.build import build_models, resolve_components
    from genhancer_plugins.recipe.schema import load_recipe
    from genhancer_plugins.training.callbacks import EngineCallbacks

    manager = load_plugins()
    loaded = load_recipe(tiny_recipe(tmp_path, preview={"images": 2, "sampling_steps": 2}), manager=manager)
    models = build_models(resolve_components(loaded, manager))
    modules = {name: models[name] for name in ("encoder", "conditioner", "tokenizer", "denoiser")}
    run = RunInfo(loaded.recipe, tmp_path, modules, Accelerator(cpu=True), show_progress=False, log=lambda m: None,
                  probe_images=lambda n: torch.rand(n, 3, 32, 32))
    EngineCallbacks().genhancer_stage_end(stage=StageInfo("stage1", 1, 0.5, tmp_path / "stage1", run, total_steps=1))
    from PIL import Image

    assert Image.open(tmp_path / "stage1" / "reconstructions.png").size[1] > 2 * 32
