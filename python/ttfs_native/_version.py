# The one version number: pyproject.toml reads it (scikit-build-core's regex provider).
__version__ = "0.1.0"
