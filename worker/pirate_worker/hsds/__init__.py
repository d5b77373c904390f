"""The Open Referral HSDS 3 schema as vendored data, and the aligned document built from it.

``schema/`` holds the published per-table HSDS files (CC BY-SA 4.0, see ``schema/README.md``);
:mod:`pirate_worker.hsds.schema` loads them at run time and generates the JSON Schema an LLM
answers for one scraped record.
"""
