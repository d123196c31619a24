"""Pure core: reward math, statistics, sketches, semver, windows, tuning. Imports nothing of ours."""
