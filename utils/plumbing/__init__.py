"""Command line, configs, errors, atomic files and the results layout. Imports no torch."""
