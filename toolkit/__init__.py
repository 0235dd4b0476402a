"""Where the project's parts meet: the `colorizer` command composes the core's, the demo's, the study's
and the analysis' subcommands, so that none of those packages imports another above it."""
