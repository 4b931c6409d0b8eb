"""Example third-party GenHancer plugin: a denoiser (``toy_mlp``), a downstream phase
(``toy_report``) and a command (``genhancer toy-report``), written against
``genhancer_plugins``' public API alone (docs/writing-a-plugin.md)."""
