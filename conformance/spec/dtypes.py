"""The dtypes the spec covers, by name: the one list every front-end, strategy and record reads.

The order is the draws' (Hypothesis shrinks towards the first: float32) and the default
``--dtypes``'s.
"""

DTYPES = ("float32", "float64", "bfloat16", "float16")
