"""Running studies: datasets, training, the search loop and its result tables."""
