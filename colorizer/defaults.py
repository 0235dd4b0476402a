"""The paper's settings that the math and the command lines share, importable without torch."""

DEFAULT_TEMPERATURE = 0.38  # the annealed mean's T (section 3.3): between the mode (vivid) and the mean (dull)
