"""GenHancer core: what a plugin author imports.

Light on purpose (no torch import) so that ``genhancer --help`` and
``genhancer plugins`` stay fast; the tensor interfaces live in
:mod:`genhancer_plugins.interfaces`.
"""

from genhancer_plugins.registry.components import COMPONENT_KINDS, ComponentSpec, OfflineUnknown, Params, construction_device, load_presets
from genhancer_plugins.hookspecs import hookimpl, hookspec

__version__ = "0.1.0"

__all__ = ["COMPONENT_KINDS", "ComponentSpec", "OfflineUnknown", "Params", "construction_device", "load_presets", "hookimpl", "hookspec", "__version__"]
