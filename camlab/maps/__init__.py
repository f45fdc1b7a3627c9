"""The map methods: what a method is, the registry, and each family's functions."""
