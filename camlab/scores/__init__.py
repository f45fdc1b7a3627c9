"""Scores of maps: localisation, deletion and insertion, faithfulness, the known cause,
and their intervals."""
