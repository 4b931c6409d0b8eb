"""Internal: the component registry (specs, presets) and the plugin manager."""
