"""SunSpec: model definitions from pysunspec2, discovery, and device adapters."""
