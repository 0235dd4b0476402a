"""Automatic colorization of grayscale photos after Zhang, Isola & Efros, "Colorful Image Colorization" (2016)."""

__all__ = ["Colorizer"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # lazy, so that `colorizer --help` and light submodules start without importing torch
    if name == "Colorizer":
        from colorizer.infer import Colorizer

        return Colorizer
    raise AttributeError(f"module 'colorizer' has no attribute {name!r}")
