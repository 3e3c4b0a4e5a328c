"""storewatch benchmarks: `make bench` (= `python -m bench`) prints the Performance table."""
