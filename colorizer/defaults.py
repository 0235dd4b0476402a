"""The paper's settings that the math and the command lines share, importable without torch."""

DEFAULT_TEMPERATURE = 0.38  # the annealed mean's T (section 3.3): between the mode (vivid) and the mean (dull)
# The share of training photos shown simulated colour hints (`train --hinted-share`); the rest get none,
# which keeps the automatic colorization as good as a model trained without hints.
HINTED_SHARE = 0.5
DEFAULT_STRENGTH = 1.0  # reference / palette strength (colorizer/reference.py), chosen on held-out photos
