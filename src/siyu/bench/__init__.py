"""Benchmarks (``siyu bench …``): ours against a reference, side by side in one run.

Each prints its figures as one JSON object on its last line; ratios are our time divided by
the reference's time.
"""
