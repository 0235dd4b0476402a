"""The paper's settings that the math and the command lines share, importable without torch."""

DEFAULT_TEMPERATURE = 0.38  # the annealed mean's T (section 3.3): between the mode (vivid) and the mean (dull)
# The soft encoding of the targets (section 3.1): Gaussian weights (SOFT_SIGMA ab units) on the
# SOFT_NEIGHBOURS nearest bins; and the class rebalancing's lambda, the uniform share mixed into the prior.
SOFT_NEIGHBOURS = 5
SOFT_SIGMA = 5.0
REBALANCE_MIX = 0.5
# The share of training photos shown simulated colour hints (`train --hinted-share`); the rest get none,
# which keeps the automatic colorization as good as a model trained without hints.
HINTED_SHARE = 0.5
RECOLOUR_SHARE = 0.0  # the share of those whose colours are turned by a random hue (`train --recolour-share`)
DEFAULT_STRENGTH = 1.0  # reference / palette strength (colorizer/reference.py), chosen on held-out photos
