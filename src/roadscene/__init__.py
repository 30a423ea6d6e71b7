"""roadscene: street-scene descriptions for blind and visually impaired pedestrians."""

__version__ = "0.1.0"
