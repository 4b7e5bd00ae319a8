"""The plugin's REST routes, grouped by who uses them."""
