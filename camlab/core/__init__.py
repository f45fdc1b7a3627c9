"""Plumbing every layer uses: keyed random numbers, script settings, run folders, tables."""
