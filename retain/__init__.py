"""retain: write what a language model learned in context into memory, and measure what it costs.

See `README.md` for the two commands and `../shared/DESIGN.md` for the architecture.
"""

__version__ = "0.1.0"
