"""The HTTP API (FastAPI) and the web pages households and the coop look at."""
