"""Aligning one recording's streams: clocks, the lag of each stream behind the reference, what is applied.

The reference is the first video stream, else audio, else IMU. Streams that share a clock (meta.json
``"clock"``; streams of one file share one by default) are never shifted against each other:

- a stream on the reference's clock gets its lag estimated as a **consistency check** only
  (``lag_role: "same clock"``): never applied, never "out of sync" (a reliable lag beyond
  ``--lag-tol`` is a warning that the declared clock looks wrong);
- every other clock is one group: each of its streams is estimated against the reference; the most
  significant reliable estimate (the smallest chance ``p``, then the highest z) is the group's lag
  (``lag_role: "estimated"`` for that stream, ``"clock group"`` for the others) and ``--align
  estimate`` applies it, with the clock drift when one was measured, to the whole group.

Estimates come from ``pipelines.ingest.sync`` (envelopes, a calibrated ``reliable``, drift on
segments of long recordings). Only reliable lags are applied; uncertain ones are reported with
the reason. Every field written here is None, never NaN, when there is no value.
"""

from __future__ import annotations

from pipelines.ingest.config import PreprocessConfig
from pipelines.ingest.streams import Stream
from pipelines.ingest.sync import estimate_drift, estimate_lag, prepare
from pipelines.ingest.sync.estimate import AGREE_TOL_S

_LAG_FIELDS = ("lag_s", "lag_status", "lag_reliable", "lag_reason", "lag_corr", "lag_z", "lag_p", "lag_second_ratio",
               "lag_agree", "lag_overlap_s", "lag_pairs")


def _lag_info(est: dict) -> dict:
    return {"lag_s": est["lag_s"], "lag_status": est["status"], "lag_reliable": est["reliable"],
            "lag_reason": est["reason"], "lag_corr": est["corr"], "lag_z": est["z"], "lag_p": est["p"],
            "lag_second_ratio": est["second_ratio"], "lag_agree": f"{est['agree']}/{est['n_pairs']}",
            "lag_overlap_s": est["overlap_s"], "lag_pairs": est["pairs"]}


def _drift_info(d: dict | None, frame_s: float) -> dict:
    if d is None:
        return {"drift_status": None}
    if d["status"] != "ok":
        return {"drift_status": "none", "drift_reason": d["reason"]}
    moves = abs(d["lag_end_s"] - d["lag_start_s"])
    return {"drift_status": "ok", "drift_ppm": d["drift_ppm"], "drift_lag_start_s": d["lag_start_s"],
            "drift_lag_end_s": d["lag_end_s"], "drift_residual_s": d["residual_s"],
            "drift_segments": f"{d['segments_used']}/{d['segments']}", "drift_exceeds_frame": bool(moves > frame_s)}


def _estimate(s: Stream, ref_series, cfg: PreprocessConfig, tol_s: float, frame_s: float,
              want_drift: bool) -> tuple[dict, dict | None]:
    other = prepare(s.envelopes, s.offset_s)  # each stream is estimated once: conditioned only meanwhile
    est = estimate_lag(ref_series, other, cfg.max_lag_s, tol_s=tol_s)
    drift = None
    if want_drift and est["reliable"]:
        drift = estimate_drift(ref_series, other, est["lag_s"], tol_s=tol_s)
    s.info.update(_lag_info(est), **_drift_info(drift, frame_s))
    return est, drift


def _worst_lag(est: dict, drift: dict | None) -> float:
    """Largest |lag| over the recording (the drift's ends when it was measured)."""
    if drift is not None and drift["status"] == "ok":
        return max(abs(drift["lag_start_s"]), abs(drift["lag_end_s"]), abs(est["lag_s"]))
    return abs(est["lag_s"])


def _message(s: Stream, ref: Stream, est: dict, cfg: PreprocessConfig, applied: bool) -> str:
    msg = (f"{s.label}: events lag {ref.label} by {est['lag_s']:+.3f} s (reliable: chance of so high a peak "
           f"p {est['p']:.2g}, z {est['z']:.1f}, {est['agree']} of {est['n_pairs']} envelope pairs agree)")
    return msg + ("; applied (--align estimate)" if applied else "; check clock_offset_s or use --align estimate")


def _apply_group(group: list[Stream], est: dict, drift: dict | None, frame_s: float) -> None:
    """Shift every stream of a clock group by the group's lag (and correct its drift)."""
    use_drift = (drift is not None and drift["status"] == "ok"
                 and abs(drift["lag_end_s"] - drift["lag_start_s"]) > frame_s)
    shift = -(drift["offset_s"] if use_drift else est["lag_s"])
    for g in group:
        applied_drift = None
        if use_drift:  # IMU: timestamps rescaled; video, audio: window starts mapped (Stream.window_index)
            g.apply_drift(drift["drift_ppm"] * 1e-6, drift["t_ref_s"])
            applied_drift = -drift["drift_ppm"]
        g.offset_s += shift
        g.info.update(lag_applied_s=shift, drift_applied_ppm=applied_drift)


def estimate_lags(series: list[Stream], ref: Stream, cfg: PreprocessConfig, apply: bool, warnings: list[str]) -> None:
    """Estimate every stream's lag behind ``ref``, record it in the stream's info (``lag_*``,
    ``drift_*``, ``lag_role``, ``clock``, ``in_sync_ok``), apply reliable ones if ``apply``."""
    frame_s = 1.0 / cfg.fps
    tol_s = max(AGREE_TOL_S, frame_s)
    ref_series = prepare(ref.envelopes, ref.offset_s)
    for s in series:
        s.info.update(clock=s.clock, lag_applied_s=0.0, drift_applied_ppm=None)
    ref.info.update(lag_s=0.0, lag_status="reference", lag_reliable=True, lag_role="reference", in_sync_ok=True)
    groups: dict[str, list[Stream]] = {}
    for s in series:
        if s is ref:
            continue
        if s.clock == ref.clock:  # consistency check only
            est, _ = _estimate(s, ref_series, cfg, tol_s, frame_s, False)
            s.info.update(lag_role="same clock", in_sync_ok=True)
            if est["reliable"] and abs(est["lag_s"]) > cfg.lag_tol_s:
                warnings.append(f"{s.label} shares the clock of {ref.label}, yet its events lag by "
                                f"{est['lag_s']:+.3f} s (consistency check only, not applied): is the clock right?")
            continue
        groups.setdefault(s.clock, []).append(s)
    for group in groups.values():
        results = [(g,) + _estimate(g, ref_series, cfg, tol_s, frame_s, True) for g in group]
        ok = [r for r in results if r[1]["reliable"]]
        lead = min(ok, key=lambda r: (r[1]["p"], -r[1]["z"])) if ok else None
        for g, est, _ in results:
            g.info["lag_role"] = "estimated" if (lead is None or g is lead[0]) else "clock group"
        if lead is None:
            for g, est, _ in results:
                g.info["in_sync_ok"] = None
                why = est["reason"] or "no estimate"
                warnings.append(f"{g.label}: sync with {ref.label} not checked: "
                                + (f"lag estimate uncertain ({est['lag_s']:+.3f} s; {why}); not applied"
                                   if est["lag_s"] is not None else why))
            continue
        s, est, drift = lead
        worst = _worst_lag(est, drift)
        if drift is not None and drift["status"] == "ok" and s.info["drift_exceeds_frame"]:
            warnings.append(f"{s.label}: its clock drifts {drift['drift_ppm']:+.0f} ppm against {ref.label}: the lag "
                            f"moves from {drift['lag_start_s']:+.3f} to {drift['lag_end_s']:+.3f} s"
                            + ("; offset and drift applied (--align estimate)" if apply else ""))
        if apply:
            _apply_group(group, est, drift, frame_s)
        for g, _e, _d in results:
            g.info["in_sync_ok"] = True if apply else worst <= cfg.lag_tol_s
        if worst > cfg.lag_tol_s:
            warnings.append(_message(s, ref, est, cfg, apply))


def lag_summary(series: list[Stream], ref: Stream) -> dict[str, dict]:
    """Every stream's lag fields (for a failure's record: the estimate is kept)."""
    return {s.name: {k: s.info.get(k) for k in ("clock", "lag_role", "lag_applied_s", "drift_applied_ppm")
                     + _LAG_FIELDS if k in s.info}
            for s in series if s is not ref}
