"""Safe layer extraction on the real filesystem: hostile tars write nothing outside and say why."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile

import pytest
import zstandard

from kapal.image.archive import HostileLayer, apply_layer, upper_changes, write_layer

pytestmark = pytest.mark.root


def make_tar(entries) -> bytes:
    """entries: (name, kind, extra) with kind in file/dir/sym/hard/chr; extra is data or link target."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, extra, *opts in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_600_000_000
            meta = opts[0] if opts else {}
            for k, v in meta.items():
                setattr(info, k, v)
            if kind == "file":
                data = extra if isinstance(extra, bytes) else extra.encode()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                continue
            info.type = {
                "dir": tarfile.DIRTYPE,
                "sym": tarfile.SYMTYPE,
                "hard": tarfile.LNKTYPE,
                "chr": tarfile.CHRTYPE,
                "fifo": tarfile.FIFOTYPE,
            }[kind]
            if kind in ("sym", "hard"):
                info.linkname = extra
            tar.addfile(info)
    return buf.getvalue()


@pytest.fixture
def jail(tmp_path):
    """dest is where the layer goes; outside is a sibling that must stay empty."""
    dest = tmp_path / "layer" / "fs"
    outside = tmp_path / "outside"
    dest.mkdir(parents=True)
    outside.mkdir()
    return dest, outside


def all_files(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.mark.parametrize(
    "entries, why",
    [
        ([("../../outside/pwned", "file", "x")], "climbs out of the layer directory"),
        ([("a/../../../outside/pwned", "file", "x")], "climbs out of the layer directory"),
        ([("esc", "sym", "../../outside"), ("esc/pwned", "file", "x")], "points outside the layer"),
        ([("abs", "sym", "OUTSIDE"), ("abs/pwned", "file", "x")], "which is a symlink"),
        ([("ok", "dir", ""), ("ok/../../../outside/pwned", "file", "x")], "climbs out"),
        ([("h", "hard", "../../outside/secret")], "climbs out of the layer directory"),
        ([("h", "hard", "OUTSIDE/secret")], "the target is not in this layer"),
        ([("../.wh.outside", "file", "")], "climbs out"),
        ([(".wh..", "file", "")], "not an entry of its directory"),
        ([("d/.wh...", "file", "")], "not an entry of its directory"),
    ],
)
def test_hostile_layer_writes_nothing_outside(jail, entries, why):
    dest, outside = jail
    (outside / "secret").write_text("keep")
    fixed = [(n, k, e.replace("OUTSIDE", str(outside)) if isinstance(e, str) else e) for n, k, e in entries]
    with pytest.raises(HostileLayer, match=why):
        apply_layer(io.BytesIO(make_tar(fixed)), dest)
    assert all_files(outside) == ["secret"]
    assert (outside / "secret").read_text() == "keep"
    assert not (dest.parent / "pwned").exists()


def test_absolute_names_are_contained(jail):
    dest, _ = jail
    apply_layer(io.BytesIO(make_tar([("/etc/hostname", "file", "in")])), dest)
    assert (dest / "etc" / "hostname").read_text() == "in"


def test_metadata_whiteouts_and_round_trip(jail):
    dest, _ = jail
    data = make_tar(
        [
            ("bin", "dir", "", {"mode": 0o755}),
            ("bin/tool", "file", "#!", {"mode": 0o4755, "uid": 1000, "gid": 100}),
            ("bin/same", "hard", "bin/tool"),
            ("bin/sh", "sym", "tool"),
            ("dev", "dir", ""),
            ("dev/null", "chr", "", {"devmajor": 1, "devminor": 3, "mode": 0o666}),
            ("gone", "dir", ""),
            ("gone/.wh..wh..opq", "file", ""),
            (".wh.deleted", "file", ""),
            ("x", "file", "attrs", {"pax_headers": {"SCHILY.xattr.user.kapal": "yes"}}),
        ]
    )
    result = apply_layer(io.BytesIO(data), dest)
    assert result.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    tool = os.lstat(dest / "bin/tool")
    assert stat.S_IMODE(tool.st_mode) == 0o4755 and (tool.st_uid, tool.st_gid) == (1000, 100)
    assert tool.st_mtime == 1_600_000_000 and tool.st_nlink == 2
    assert os.readlink(dest / "bin/sh") == "tool"
    null = os.lstat(dest / "dev/null")
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    wh = os.lstat(dest / "deleted")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
    assert os.getxattr(dest / "gone", "trusted.overlay.opaque") == b"y"
    assert os.getxattr(dest / "x", "user.kapal") == b"yes"
    assert os.stat(dest / "bin").st_mtime == 1_600_000_000

    out = io.BytesIO()
    write_layer(dest, out)
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        members = {m.name.rstrip("/"): m for m in tar.getmembers()}
    assert ".wh.deleted" in members and members[".wh.deleted"].isreg()
    assert "gone/.wh..wh..opq" in members
    assert members["bin/tool"].islnk() and members["bin/tool"].linkname == "bin/same"  # first one in sorted order
    assert members["x"].pax_headers.get("SCHILY.xattr.user.kapal") == "yes"
    assert members["dev/null"].ischr()


@pytest.mark.parametrize("compress", [lambda b: b, gzip.compress, lambda b: zstandard.ZstdCompressor().compress(b)])
def test_diff_id_is_the_uncompressed_digest(jail, compress):
    dest, _ = jail
    data = make_tar([("a", "file", "hello"), ("b/c", "file", "world")])
    result = apply_layer(io.BytesIO(compress(data)), dest)
    assert result.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert (dest / "b/c").read_text() == "world"


def test_truncated_gzip_is_refused(jail):
    dest, _ = jail
    blob = gzip.compress(make_tar([("a", "file", "x" * 100000)]))
    with pytest.raises(Exception, match="truncated|not a valid tar"):
        apply_layer(io.BytesIO(blob[: len(blob) // 2]), dest)


def test_upper_changes_lists_a_c_d(tmp_path):
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    (lower / "etc").mkdir(parents=True)
    (lower / "etc/motd").write_text("hi")
    (lower / "old").write_text("x")
    (upper / "etc").mkdir(parents=True)
    (upper / "etc/motd").write_text("changed")
    (upper / "new").write_text("n")
    os.mknod(upper / "old", stat.S_IFCHR, 0)
    changes = [(c.kind, c.path) for c in upper_changes(upper, [lower])]
    assert changes == [("C", "/etc"), ("C", "/etc/motd"), ("A", "/new"), ("D", "/old")]
