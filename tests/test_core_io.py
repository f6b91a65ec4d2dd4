"""pipelines.core.io: atomic writes and comma-list parsing."""

from __future__ import annotations


def test_atomic_writes_are_complete_or_absent(tmp_path):
    """core.io: the file appears only when the block ends, with the mode open() would give it;
    a failure leaves neither the file nor a temporary."""
    import os
    import stat

    import pytest

    from pipelines.core.io import atomic_path, atomic_write_text, parse_list

    target = tmp_path / "sub" / "a.json"
    atomic_write_text(target, '{"x": 1}')
    assert target.read_text() == '{"x": 1}'
    plain = tmp_path / "plain"
    plain.write_text("")
    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "b.png", suffix=".png") as tmp:
            assert tmp.name.startswith(".b.png.") and tmp.name.endswith(".tmp.png")
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert sorted(os.listdir(tmp_path)) == ["plain", "sub"]
    assert parse_list(" video, audio ,,imu ") == ["video", "audio", "imu"]
    assert parse_list(["1", 0.5], float) == [1.0, 0.5] and parse_list(None) == []
