"""Scoring every method on a split, in shards, into leaderboards; which scores to trust."""
