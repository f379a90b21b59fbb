"""Service quality and its recovery (SPEC section 14).

`feedback` records an answer to a verified visit and opens a case on a low score;
`recovery` alerts the store and runs the recovery offer through the decision; `cases`
follows a case to its resolution and its recovery; `gap` reports perception against
expectation per store and dimension.
"""
