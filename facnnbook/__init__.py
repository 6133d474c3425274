"""The book's machinery, apart from the library: the runs a profile's book needs and what
they cost (:mod:`.plan`, ``python -m facnnbook.plan``), the store of those runs
(:mod:`.runs`), the analysis cache (:mod:`.cache`), publishing into the book
(:mod:`.publish`), the chapters' computations (:mod:`.chapters`), Table 1 (:mod:`.table1`),
the verdict file (:mod:`.claims`), the explorers (:mod:`.explorer`), benchmark tables
(:mod:`.bench`) and the build (:mod:`.pipeline`, ``python -m facnnbook``).

The library (``facnn``) never imports it (tests/test_book.py checks), so a reader of the
paper's code meets none of this.
"""
