"""The suite's own test modules, collected only by the conformance plugin's runs.

Run them with ``mimic-conformance`` (or ``pytest -p conformance.plugin --pyargs
conformance.suite``). Each test judges one requirement on one operation of the spec given by
``--spec``; the schemathesis tests judge the SCHEMA-* requirements per operation.
"""
