"""Internal helpers: errors, atomic files, images, tables, seeds, dtypes. Not a public API: plugins import
``genhancer_plugins``."""
