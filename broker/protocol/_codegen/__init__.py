"""The code generator behind ``python -m backbone.broker.protocol.generate`` (dev-time only).

``model`` turns a JSON message schema into struct definitions; ``emit`` and
``functions`` write the decode/encode functions; ``render`` assembles a module.
Nothing here runs in the broker.
"""
