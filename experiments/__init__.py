"""gdlab experiments: absl apps, each run as ``python -m experiments.<name>``."""
