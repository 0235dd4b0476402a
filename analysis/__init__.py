"""Analysis of the paper's experiments: the preference votes (figures 2 to 5)."""
