"""kubetune's version: the package's, and the tag of the images it runs in."""

__version__ = "0.1.0"
