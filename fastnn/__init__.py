"""fastnn: small neural networks on a CPU, fast, from code a newcomer can read."""

__version__ = "0.1.0"
