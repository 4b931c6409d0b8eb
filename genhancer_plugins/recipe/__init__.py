"""Internal: the recipe schema, its files (extends, --set, error locations) and component resolution."""
