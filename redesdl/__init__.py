"""redesdl: download one file in verified parts from every live secondary at once.

Three actors share this package: the central registry (``redesdl.central``),
the chunk servers (``redesdl.secondary``) and the client (``redesdl.client``).
They speak the framed protocol of ``redesdl.protocol``.
"""

__version__ = "0.1.0"
