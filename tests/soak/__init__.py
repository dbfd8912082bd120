"""Soak tests: long or memory-hungry runs, marked ``soak`` and run by ``make soak`` only."""
