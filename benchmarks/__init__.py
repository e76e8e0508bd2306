"""Benchmarks for Backbone (not tests): ``make bench`` runs ``python -m benchmarks``.

Modules: ``broker`` (Kafka client workloads against Backbone's broker and Tansu,
side by side), ``workloads`` (the client functions it runs, one process each),
``common`` (broker processes, isolated runs, tables), and any other module
exposing ``main(argv)`` that ``benchmarks.__main__`` lists in ``SUITES``.
"""
