"""The study built on ``lora_lib``: SST-2, runs, grids and the sweep, records, statistics and the report.

It needs the ``study`` extra (``pip install "lora_lib[study]"``); the library itself does not.
"""
