"""The shop: a product catalogue served as JSON."""
