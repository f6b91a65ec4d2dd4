"""The report's names and orders: splits, methods, a run's configuration and its human label."""

from __future__ import annotations

SPLIT_ORDER = ("id", "ood")
SPLIT_NAMES = {"id": "in distribution", "ood": "out of distribution"}
METHOD_ORDER = ("dcat", "logit-kd", "feature-kd")
METHOD_NAMES = {"dcat": "D-CAT", "logit-kd": "logit KD", "feature-kd": "feature KD",
                "features-rf": "window features + random forest"}
SELECTED_NAME = "D-CAT, lambda and MCMA chosen on validation"


def split_key(s: str):
    """Sort key of a split: ``id``, ``ood``, then any other by name."""
    return (SPLIT_ORDER.index(s), "") if s in SPLIT_ORDER else (len(SPLIT_ORDER), str(s))


def num_key(v):
    """Sort key of a number that may be None (None first)."""
    return (0, 0.0) if v is None else (1, float(v))


def mcma_key(v):
    """Sort key of an MCMA setting: on, off, unset."""
    return {True: 0, False: 1}.get(v, 2)


def method_key(m: str):
    return (METHOD_ORDER.index(m), "") if m in METHOD_ORDER else (len(METHOD_ORDER), str(m))


def config_of(r: dict) -> tuple:
    """(src, method, lam, mcma, temperature) of a transfer row."""
    lam = None if r.get("lam") is None else float(r["lam"])
    temp = None if r.get("temperature") is None else float(r["temperature"])
    mcma = None if r.get("mcma") is None else bool(r["mcma"])
    return (r.get("src") or "", r.get("method") or "", lam, mcma, temp)


def config_key(c: tuple):
    src, method, lam, mcma, temp = c
    return (src, method_key(method), num_key(lam), mcma_key(mcma), num_key(temp))


def pick_key(c: tuple):
    """Representative config first: lambda 1, then MCMA on, then the usual order."""
    return (c[2] is None or float(c[2]) != 1.0, mcma_key(c[3]), config_key(c))


def split_name(s: str) -> str:
    """``in distribution`` / ``out of distribution`` (another split: its own name)."""
    return SPLIT_NAMES.get(s, str(s))


def fmt_num(v: float) -> str:
    """A setting's number as a label shows it: ``0.1``, ``1``, ``10``."""
    return f"{float(v):g}"


def model_label(role: str, tgt: str, src: str = "", method: str = "", lam=None, mcma=None, temperature=None,
                show_lam: bool = True) -> str:
    """Human name of a model: ``imu alone``, ``imu alone, second seed (null)``, ``video->imu D-CAT
    lambda 1, MCMA``, ``video alone (source)``, ``imu window features + random forest``."""
    if role == "baseline":
        return f"{tgt} alone"
    if role == "null":
        return f"{tgt} alone, second seed (null)"
    if role == "source":
        return f"{tgt} alone (source)"
    if role == "reference":
        return f"{tgt} {METHOD_NAMES.get(method, method)} (classical)"
    if role == "selected":
        return f"{src}->{tgt} {SELECTED_NAME}"
    name = f"{src}->{tgt} {METHOD_NAMES.get(method, method)}"
    if method == "dcat":
        if lam is not None:
            name += f" lambda {fmt_num(lam)}"
        if mcma is not None:
            name += ", MCMA" if mcma else ", no MCMA"
        if temperature is not None:
            name += f", T {fmt_num(temperature)}"
        return name
    if lam is not None and show_lam:
        name += f" lambda {fmt_num(lam)}"
    if temperature is not None:
        name += f" T {fmt_num(temperature)}"
    if mcma:  # a KD run says MCMA only when the mask was on (off is the plain method)
        name += ", MCMA"
    return name


def transfer_labels(transfer_rows: list[dict]) -> dict:
    """(tgt, config) -> label; a KD method shows its lambda only when it was run with several lambdas."""
    lams: dict = {}
    for r in transfer_rows:
        c = config_of(r)
        lams.setdefault((r.get("tgt"), c[0], c[1]), set()).add(c[2])
    out = {}
    for r in transfer_rows:
        c = config_of(r)
        key = (r.get("tgt"), c)
        if key not in out:
            out[key] = model_label("transfer", r.get("tgt"), *c, show_lam=len(lams[(r.get("tgt"), c[0], c[1])]) > 1)
    return out


def row_label(r: dict, labels: dict) -> str:
    """The label of the table entry a row belongs to (``labels``: :func:`transfer_labels`)."""
    if r.get("role") == "transfer":
        return labels.get((r.get("tgt"), config_of(r))) or model_label("transfer", r.get("tgt"), *config_of(r))
    return model_label(r.get("role"), r.get("tgt"), method=r.get("method") or "")
