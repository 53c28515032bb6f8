"""shipbook: parameterised Jupyter release runbooks for a Django app on AWS."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("shipbook")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0"
