"""Only the C part of the build; everything else is in pyproject.toml.

The C parts (ingest scanners, chunk encoder) are optional: where no C compiler is available the install still
succeeds and the ingest parsers use their pure-Python paths (slower, same results).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "perfintel.ingest._scan",
            ["perfintel/ingest/_scan.c"],
            extra_compile_args=["-O3", "-std=gnu11", "-Wall"],
            optional=True,
        ),
        Extension(
            "perfintel.storage.duckdb._chunks",
            ["perfintel/storage/duckdb/_chunks.c"],
            extra_compile_args=["-O3", "-std=gnu11", "-Wall"],
            libraries=["dl", "m"],
            optional=True,
        ),
    ]
)
