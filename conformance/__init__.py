"""tpconform: a property-based conformance suite for tensor-parallel linear layers.

The verdict side of the suite (this package) never imports the implementation under test:
candidate code runs in worker processes (``tpconform.transport.worker``) and only plain tensors cross back.
"""

__version__ = "0.1.0"
