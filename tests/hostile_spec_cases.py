"""Hostile and careless experiment specs (SPEC.toml) that ``dcat experiment SPEC --dry-run`` must
refuse with a clean message naming the spec file and the key: no traceback, exit != 0 (issue 13,
item 14; ``[train] epochs = -1`` is item 11). Shared by ``tests/test_hostile_specs.py`` and the fuzz
suite.

Each case is ``(case_id, text, key)``: ``text`` is the spec (``str``, or ``bytes`` for undecodable
files) in which ``@DATA@`` stands for a shards directory, and ``key`` is a word the message must
hold (the setting's key, or the problem). :func:`spec_text` fills in the directory.
"""

from __future__ import annotations

#: a valid grid on ``@DATA@`` that every case below spoils in one way
BASE = 'data = "@DATA@"\nsplits = ["id"]\nid_folds = 1\nseeds = [0]\nshifts = []\n'
GOOD_SPECS: list[tuple[str, str]] = [
    ("base", BASE + "[train]\nepochs = 1\n"),
    ("ints-for-floats", BASE + "lambdas = [1, 10]\nbaseline_lambda = 2\ntemperature = 3\n[train]\nlr = 1\nepochs = 2\n"),
    ("experiment-table", '[experiment]\ndata = "@DATA@"\nsplits = ["id"]\nid_folds = 1\nseeds = [4, 5]\nshifts = [0.5]\n'),
]


def _deep(n: int) -> str:
    return "[" * n + "]" * n


HOSTILE_SPECS: list[tuple[str, str | bytes, str]] = [
    # tracebacks before (issue 13 item 14)
    ("data-int", 'data = 5\nseeds = [0]\n', "data"),
    ("folds-float", BASE + "folds = 2.5\n", "folds"),
    ("lambdas-scalar", BASE + "lambdas = 1\n", "lambdas"),
    ("seeds-scalar", 'data = "@DATA@"\nseeds = 3\n', "seeds"),
    ("seeds-text", 'data = "@DATA@"\nseeds = ["a"]\n', "seeds"),
    ("train-int", BASE + "train = 5\n", "train"),
    ("jobs-text", BASE + 'jobs = "two"\n', "jobs"),
    ("deep-array-5000", BASE + "lambdas = " + _deep(5000) + "\n", "nested"),
    # accepted by --dry-run before
    ("seeds-float", 'data = "@DATA@"\nseeds = [1.5]\n', "seeds"),
    ("temperature-zero", BASE + "temperature = 0\n", "temperature"),
    ("baseline-lambda-nan", BASE + "baseline_lambda = nan\n", "baseline_lambda"),
    ("train-lr-text", BASE + '[train]\nlr = "fast"\n', "lr"),
    ("train-batch-size-zero", BASE + "[train]\nbatch_size = 0\n", "batch_size"),
    ("train-epochs-negative", BASE + "[train]\nepochs = -1\n", "epochs"),  # item 11
    ("train-epochs-zero", BASE + "[train]\nepochs = 0\n", "epochs"),
    # typos, kinds, ranges, sizes
    ("typo-key", BASE + "lamdbas = [1]\n", "did you mean lambdas"),
    ("typo-train-key", BASE + "[train]\nepoch = 3\n", "did you mean epochs"),
    ("pairs-text", BASE + 'pairs = "video->imu"\n', "pairs"),
    ("methods-text", BASE + 'methods = "dcat"\n', "methods"),
    ("mcma-ints", BASE + "mcma = [1, 0]\n", "mcma"),
    ("threads-zero", BASE + "threads = 0\n", "threads"),
    ("jobs-negative", BASE + "jobs = -2\n", "jobs"),
    ("jobs-bool", BASE + "jobs = true\n", "jobs"),
    ("id-folds-zero", BASE.replace("id_folds = 1", "id_folds = 0"), "id_folds"),
    ("folds-one", BASE + "folds = 1\n", "folds"),
    ("split-seed-huge", BASE + "split_seed = 99999999999999999999999\n", "split_seed"),
    ("split-seed-negative", BASE + "split_seed = -1\n", "split_seed"),
    ("seeds-duplicate", 'data = "@DATA@"\nseeds = [0, 0]\n', "seeds"),
    ("seeds-negative", 'data = "@DATA@"\nseeds = [-1]\n', "seeds"),
    ("seeds-bool", 'data = "@DATA@"\nseeds = [true]\n', "seeds"),
    ("lambdas-inf", BASE + "lambdas = [inf]\n", "lambdas"),
    ("lambdas-negative", BASE + "lambdas = [-1]\n", "lambdas"),
    ("shifts-nan", BASE.replace("shifts = []", "shifts = [nan]"), "shifts"),
    ("shift-lambda-negative", BASE + "shift_lambda = -1\n", "shift_lambda"),
    ("source-label-fraction-two", BASE + "source_label_fraction = 2\n", "source_label_fraction"),
    ("temperature-inf", BASE + "temperature = inf\n", "temperature"),
    ("null-text", BASE + 'null = "yes"\n', "null"),
    ("train-epochs-bool", BASE + "[train]\nepochs = true\n", "epochs"),
    ("train-epochs-float", BASE + "[train]\nepochs = 2.5\n", "epochs"),
    ("train-d-float", BASE + "[train]\nd = 1e3\n", "d"),
    ("train-dropout-one", BASE + "[train]\ndropout = 1\n", "dropout"),
    ("train-label-fraction-zero", BASE + "[train]\nlabel_fraction = 0\n", "label_fraction"),
    ("train-lr-nan", BASE + "[train]\nlr = nan\n", "lr"),
    ("train-batch-size-huge", BASE + "[train]\nbatch_size = 99999999999999999999\n", "batch_size"),
    ("methods-unknown", BASE + 'methods = ["rf"]\n', "features-rf"),
    ("splits-unknown", BASE.replace('splits = ["id"]', 'splits = ["both"]'), "splits"),
    ("align-unknown", BASE + 'align = "magic"\n', "align"),
    ("train-norm-unknown", BASE + '[train]\nnorm = "bogus"\n', "norm"),
    ("train-standardize-unknown", BASE + '[train]\nstandardize = 1\n', "standardize"),
    ("pairs-no-arrow", BASE + 'pairs = ["video-imu"]\n', "SOURCE->TARGET"),
    ("no-data", 'seeds = [0]\n', "data"),
    ("text-with-nul", BASE + 'title = "a\\u0000b"\n', "title"),
    ("int-5000-digits", BASE + "split_seed = " + "9" * 5000 + "\n", "TOML"),
    ("huge-file", BASE + "# " + "x" * (300 * 1024) + "\n", "larger than"),
    ("not-utf8", b'data = "\xff\xfe"\n', "UTF-8"),
    ("not-toml", BASE + "seeds = [\n", "TOML"),
]


def spec_text(text: str | bytes, data: str) -> str | bytes:
    """The spec with ``@DATA@`` replaced by the shards directory ``data``."""
    if isinstance(text, bytes):
        return text.replace(b"@DATA@", data.encode())
    return text.replace("@DATA@", data)
