"""The shipped suite files (package data): ``quick``, the paper's experiments and the studies.

Found with :func:`importlib.resources.files`, so an installed wheel carries them; run one by name
(``fractalbayes run quick --out DIR``) or copy one as the start of your own.
"""
