"""The classifiers explained: GAP models, any Keras classifier, a run or a file."""
