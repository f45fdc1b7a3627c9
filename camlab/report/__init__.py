"""The figures, and the result tables of the README and the guides."""
