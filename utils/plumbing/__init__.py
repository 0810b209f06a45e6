"""Configs, errors, atomic files and the results layout: what every layer above uses. Imports no torch."""
