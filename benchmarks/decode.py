"""Video decoders side by side: decord (dcat's decoder), PyAV and torchcodec, on the same files.

    python benchmarks/decode.py                     # 60 s at 30 fps, 128 px and 256 px, H.264, GOP 15
    python benchmarks/decode.py --smoke --json      # 2 s, a few queries: checks that the script still runs

For every generated video and every decoder that can be imported, it measures:
  * frames/s decoding every frame in order at the output size (default 112x112, what preprocessing
    writes), frames converted to numpy uint8 [N, H, W, 3], one decoding thread;
  * timestamps: the decoder's per-frame times against the container's packet pts (sorted), error in frames;
  * the frame at a requested time: for random times t (visited in random order, so each one seeks),
    the expected frame is the last one whose container pts <= t; reported are the error of the returned
    frame's pts and of its pixels (the best-matching frame of the same decoder's sequential decode,
    within +-8 frames), both in frames, and how far that best match is from identical (mean |diff|);
  * output sizes: whether frames asked for at 112, 96, 48, 32 px and 96x128 come back at that size, and
    their mean |diff| (0-255) from the frame decoded at full size and resized by dcat (readers.resize_frames).
Rows: decord at the output size (dcat's default), decord at the file's size + dcat's resize (dcat's
fallback for the widths decord's scaler gets wrong), PyAV (swscale, AREA), torchcodec (v2.Resize).
A decoder that cannot be imported is skipped with a line saying why.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.core.io import to_json  # noqa: E402
from pipelines.ingest.readers import resize_frames  # noqa: E402

SCALE_SIZES = [(112, 112), (96, 96), (48, 48), (32, 32), (96, 128)]
MATCH_WINDOW = 8


# ------------------------------------------------------------------------------------ test video
def make_video(path: Path, seconds: float, size: int, fps: int = 30, gop: int = 15, seed: int = 0) -> None:
    """H.264 yuv420p (x264 preset medium: B-frames, so decode order != presentation order), frame i at
    pts i / fps: a smooth random texture moving on a random walk, so neighbouring frames differ."""
    import av

    rng = np.random.default_rng(seed)
    big = 3 * size
    tex = rng.random((big // 8 + 2, big // 8 + 2, 3)).astype(np.float32)
    tex = np.kron(tex, np.ones((8, 8, 1), np.float32))[:big, :big]  # blocks, then blurred
    for ax in (0, 1):
        tex = (np.roll(tex, 4, ax) + tex + np.roll(tex, -4, ax)) / 3
    tex = (tex - tex.min()) / (tex.max() - tex.min()) * 220 + 16
    n = int(round(seconds * fps))
    steps = rng.integers(-5, 6, size=(n, 2))
    steps[np.all(steps == 0, axis=1)] = (3, 2)
    pos = np.clip(np.cumsum(steps, axis=0) % (2 * size), 0, 2 * size - 1)
    with av.open(str(path), mode="w") as c:
        vs = c.add_stream("libx264", rate=Fraction(fps))
        vs.width = vs.height = size
        vs.pix_fmt = "yuv420p"
        vs.codec_context.thread_count = 1
        vs.options = {"crf": "23", "preset": "medium",
                      "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:threads=1"}
        for i in range(n):
            y, x = pos[i]
            img = tex[y:y + size, x:x + size] * (0.85 + 0.15 * np.sin(i / 7.0))
            fr = av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")
            fr.pts = i
            for p in vs.encode(fr):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)


def container_pts(path: Path) -> np.ndarray:
    """Presentation times (s) of the video stream's packets, sorted: what a correct decoder returns."""
    import av

    with av.open(str(path)) as c:
        st = c.streams.video[0]
        pts = [p.pts for p in c.demux(st) if p.pts is not None and p.size > 0]
        return np.sort(np.asarray(pts, dtype=np.float64)) * float(st.time_base)


# -------------------------------------------------------------------------------------- decoders
class Decord:
    name = "decord"

    def __init__(self) -> None:
        import decord

        self.m = decord
        self.version = getattr(decord, "__version__", "?")

    def _reader(self, path: Path, size: tuple[int, int] | None):
        kw = {"width": size[1], "height": size[0]} if size else {}
        return self.m.VideoReader(str(path), ctx=self.m.cpu(0), num_threads=1, **kw)

    def sequential(self, path: Path, size: tuple[int, int] | None, limit: int | None = None):
        vr = self._reader(path, size)
        n = len(vr) if limit is None else min(limit, len(vr))
        out = [vr.get_batch(list(range(k, min(n, k + 64)))).asnumpy() for k in range(0, n, 64)]
        ts = np.asarray(vr.get_frame_timestamp(np.arange(len(vr))), dtype=np.float64)[:n, 0]
        return np.concatenate(out), ts

    def at_times(self, path: Path, size: tuple[int, int], times: np.ndarray):
        """decord seeks by frame index: the index from its own timestamp list, then that frame."""
        vr = self._reader(path, size)
        ts = np.asarray(vr.get_frame_timestamp(np.arange(len(vr))), dtype=np.float64)[:, 0]
        res = []
        for t in times:
            i = max(0, int(np.searchsorted(ts, t + 1e-9, side="right")) - 1)
            res.append((vr[i].asnumpy(), float(ts[i])))
        return res


class DecordResizeHere(Decord):
    """decord at the file's size, frames resized by dcat (readers.resize_frames): what dcat's reader falls
    back to for the output widths decord's scaler gets wrong."""

    name = "decord+resize"

    def sequential(self, path: Path, size: tuple[int, int] | None, limit: int | None = None):
        frames, ts = super().sequential(path, None, limit)
        return (frames if size is None else resize_frames(frames, size)), ts

    def at_times(self, path: Path, size: tuple[int, int], times: np.ndarray):
        return [(resize_frames(f[None], size)[0], t) for f, t in super().at_times(path, None, times)]


class PyAV:
    name = "pyav"

    def __init__(self) -> None:
        import av

        self.m = av
        self.version = av.__version__

    def _open(self, path: Path):
        c = self.m.open(str(path))
        st = c.streams.video[0]
        st.thread_count = 1
        return c, st

    @staticmethod
    def _arr(fr, size: tuple[int, int] | None) -> np.ndarray:
        if size is None:
            return fr.to_ndarray(format="rgb24")
        return fr.to_ndarray(format="rgb24", width=size[1], height=size[0], interpolation="AREA")

    def sequential(self, path: Path, size: tuple[int, int] | None, limit: int | None = None):
        c, st = self._open(path)
        frames, ts = [], []
        with c:
            for fr in c.decode(st):
                frames.append(self._arr(fr, size))
                ts.append(float(fr.pts * st.time_base))
                if limit is not None and len(frames) >= limit:
                    break
        return np.stack(frames), np.asarray(ts)

    def at_times(self, path: Path, size: tuple[int, int], times: np.ndarray):
        """Seek back to the keyframe at or before t, decode forward; the last frame with pts <= t."""
        c, st = self._open(path)
        res = []
        with c:
            for t in times:
                c.seek(int(t / st.time_base), stream=st, backward=True, any_frame=False)
                last = None
                for fr in c.decode(st):
                    if fr.pts * st.time_base > t + 1e-9 and last is not None:
                        break
                    last = fr
                res.append((self._arr(last, size), float(last.pts * st.time_base)))
        return res


class TorchCodec:
    name = "torchcodec"

    def __init__(self) -> None:
        import torchcodec
        from torchcodec.decoders import VideoDecoder

        self.VD = VideoDecoder
        self.version = getattr(torchcodec, "__version__", "?")

    def _dec(self, path: Path, size: tuple[int, int] | None):
        kw = {}
        if size is not None:
            from torchvision.transforms import v2

            kw["transforms"] = [v2.Resize(size=size)]
        return self.VD(str(path), seek_mode="exact", dimension_order="NHWC", num_ffmpeg_threads=1, **kw)

    def sequential(self, path: Path, size: tuple[int, int] | None, limit: int | None = None):
        d = self._dec(path, size)
        n = len(d) if limit is None else min(limit, len(d))
        out, ts = [], []
        for k in range(0, n, 64):
            b = d.get_frames_in_range(k, min(n, k + 64))
            out.append(b.data.numpy())
            ts.append(b.pts_seconds.numpy())
        return np.concatenate(out), np.concatenate(ts).astype(np.float64)

    def at_times(self, path: Path, size: tuple[int, int], times: np.ndarray):
        d = self._dec(path, size)
        res = []
        for t in times:
            f = d.get_frame_played_at(float(t))
            res.append((f.data.numpy(), float(f.pts_seconds)))
        return res


DECODERS: list[Callable] = [Decord, DecordResizeHere, PyAV, TorchCodec]
SKIP_HINTS = {"torchcodec": " (torchcodec needs the system FFmpeg 4-7 libraries and a wheel built for the installed "
                            "torch: PyPI's linux wheels are built against CUDA torch and do not load with a CPU-only "
                            "torch; install the CPU wheel from download.pytorch.org/whl/cpu)"}


def load_decoders() -> tuple[list, dict[str, str]]:
    ok, skipped = [], {}
    for cls in DECODERS:
        try:
            ok.append(cls())
        except Exception as e:  # ImportError, or a library that fails to load (OSError)
            msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            skipped[cls.name] = f"{type(e).__name__}: {msg[:200]}" + SKIP_HINTS.get(cls.name, "")
    return ok, skipped


# ------------------------------------------------------------------------------------ measuring
def to_frames(t: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Times -> index of the nearest container pts."""
    i = np.clip(np.searchsorted(ref, t), 1, len(ref) - 1)
    return np.where(np.abs(ref[i - 1] - t) <= np.abs(ref[i] - t), i - 1, i)


def speed(dec, path: Path, size: tuple[int, int], reps: int) -> tuple[float, np.ndarray, np.ndarray]:
    """Median frames/s of sequential decoding (the last run's frames and times are returned)."""
    runs = []
    for _ in range(reps):
        t0 = time.perf_counter()
        frames, ts = dec.sequential(path, size)
        runs.append(len(frames) / (time.perf_counter() - t0))
    return sorted(runs)[len(runs) // 2], frames, ts


def seek_errors(dec, path: Path, size: tuple[int, int], ref: np.ndarray, frames: np.ndarray,
                times: np.ndarray) -> dict:
    """The frame at requested times against the container's pts and the decoder's own sequential decode."""
    expect = np.searchsorted(ref, times + 1e-9, side="right") - 1
    t0 = time.perf_counter()
    got = dec.at_times(path, size, times)
    dt = time.perf_counter() - t0
    pts_err, px_err, px_gap = [], [], []
    seq = frames.astype(np.int16)
    for (img, pts), e in zip(got, expect.tolist()):
        pts_err.append(abs(int(to_frames(np.array([pts]), ref)[0]) - int(e)))
        lo, hi = max(0, e - MATCH_WINDOW), min(len(seq), e + MATCH_WINDOW + 1)
        if img.shape != seq.shape[1:]:
            px_err.append(MATCH_WINDOW + 1)
            px_gap.append(255.0)
            continue
        mad = np.abs(seq[lo:hi] - img.astype(np.int16)).mean(axis=(1, 2, 3))
        px_err.append(abs(lo + int(np.argmin(mad)) - int(e)))
        px_gap.append(float(mad.min()))
    return {"seek_per_s": round(len(times) / dt, 1), "seek_pts_err_frames": max(pts_err),
            "seek_pixel_err_frames": max(px_err), "seek_pixel_mad": round(max(px_gap), 3)}


def scaling(dec, path: Path, sizes: list[tuple[int, int]], n: int = 4) -> dict:
    """Per output size: the shape returned, and mean |diff| from dcat's resize of the full-size frame."""
    full, _ = dec.sequential(path, None, limit=n)
    out = {}
    for s in sizes:
        key = f"{s[0]}x{s[1]}"
        try:
            fr, _ = dec.sequential(path, s, limit=n)
        except Exception as e:
            msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
            out[key] = {"ok": False, "error": "size mismatch" if "must exactly match" in msg else msg[-80:]}
            continue
        if fr.shape[1:3] != s:
            out[key] = {"ok": False, "error": f"returned {fr.shape[1]}x{fr.shape[2]}"}
            continue
        ref = resize_frames(full[: len(fr)], s).astype(np.int16)
        out[key] = {"ok": True, "mad_vs_dcat_resize": round(float(np.abs(fr.astype(np.int16) - ref).mean()), 2)}
    return out


def measure(dec, path: Path, out_size: tuple[int, int], reps: int, queries: int, seed: int) -> dict:
    ref = container_pts(path)
    fps, frames, ts = speed(dec, path, out_size, reps)
    r = {"frames": len(frames), "container_frames": len(ref), "fps": round(fps, 1)}
    m = min(len(ts), len(ref))
    r["pts_err_frames"] = int(np.abs(to_frames(ts[:m], ref) - np.arange(m)).max()) if m else -1
    r["pts_err_ms"] = round(float(np.abs(ts[:m] - ref[:m]).max()) * 1000, 3) if m else -1
    rng = np.random.default_rng(seed)
    times = rng.uniform(ref[0], ref[-1] + (ref[-1] - ref[-2]) * 0.99, size=queries)
    r.update(seek_errors(dec, path, out_size, ref, frames, times))
    r["scaling"] = scaling(dec, path, SCALE_SIZES)
    return r


def print_table(res: dict, skipped: dict, out_size: tuple[int, int]) -> None:
    p = lambda *a: print(*a, file=sys.stderr)  # noqa: E731
    p(f"\nsequential decode at {out_size[0]}x{out_size[1]}, 1 thread; frame at a requested time (seek)")
    p("| video | decoder | frames/s | frames (container) | pts err (frames) | seeks/s | seek pts err (frames) "
      "| seek pixel err (frames) | pixel mean abs diff |")
    p("|---|---|---|---|---|---|---|---|---|")
    for video, per in res.items():
        for name, r in per.items():
            p(f"| {video} | {name} | {r['fps']:,.0f} | {r['frames']} ({r['container_frames']}) | "
              f"{r['pts_err_frames']} | {r['seek_per_s']:,.1f} | {r['seek_pts_err_frames']} | "
              f"{r['seek_pixel_err_frames']} | {r['seek_pixel_mad']:.2f} |")
    p("\noutput sizes (mean |diff| 0-255 from the full-size frame resized by dcat; 'wrong' = not that size)")
    sizes = [f"{s[0]}x{s[1]}" for s in SCALE_SIZES]
    p("| video | decoder | " + " | ".join(sizes) + " |")
    p("|---|---|" + "---|" * len(sizes))
    for video, per in res.items():
        for name, r in per.items():
            cells = [f"{r['scaling'][k]['mad_vs_dcat_resize']:.2f}" if r["scaling"][k]["ok"]
                     else f"wrong ({r['scaling'][k]['error']})" for k in sizes]
            p(f"| {video} | {name} | " + " | ".join(cells) + " |")
    for name, why in skipped.items():
        p(f"skipped {name}: {why}")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="length of each generated video")
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256], help="native sizes of the videos")
    ap.add_argument("--out-size", type=int, default=112, help="output size for speed and seeks (square)")
    ap.add_argument("--gop", type=int, default=15, help="frames between keyframes (dcat synth's default)")
    ap.add_argument("--reps", type=int, default=3, help="sequential decodes per decoder (median reported)")
    ap.add_argument("--queries", type=int, default=100, help="random times to seek to")
    ap.add_argument("--smoke", action="store_true", help="2 s videos at 128 px, 1 rep, 5 queries")
    ap.add_argument("--work", type=Path, default=None, help="folder for the videos (default: temporary, removed)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON on stdout")
    a = ap.parse_args(argv)
    if a.smoke:
        a.seconds, a.sizes, a.reps, a.queries = 2.0, [128], 1, 5
    work = a.work or Path(tempfile.mkdtemp(prefix="dcat-decode-"))
    work.mkdir(parents=True, exist_ok=True)
    decoders, skipped = load_decoders()
    out_size = (a.out_size, a.out_size)
    res: dict = {}
    try:
        for size in a.sizes:
            path = work / f"v{size}_{a.seconds:g}s_gop{a.gop}.mp4"
            if not path.exists():
                make_video(path, a.seconds, size, gop=a.gop)
            path.read_bytes()  # page cache: every decoder reads a warm file
            video = f"{size}px {a.seconds:g}s"
            res[video] = {d.name: measure(d, path, out_size, a.reps, a.queries, seed=size) for d in decoders}
    finally:
        if a.work is None:
            shutil.rmtree(work, ignore_errors=True)
    fig = {"versions": {d.name: d.version for d in decoders}, "skipped": skipped, "out_size": list(out_size),
           "gop": a.gop, "results": res}
    print_table(res, skipped, out_size)
    if a.json:
        print(to_json(fig, indent=1))
    return fig


if __name__ == "__main__":
    main()
