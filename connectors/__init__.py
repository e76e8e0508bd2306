"""Built-in connectors, one module per kind; each registers through the
``backbone.connectors`` entry-point group."""
