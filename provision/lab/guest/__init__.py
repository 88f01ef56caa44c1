"""Scripts that run inside lab containers (stdlib only, Python 3.11): copied or packaged, never imported."""
