"""`restore data lmdb`: BasicSR-compatible, resumable after a crash, self-sizing and verified."""

from __future__ import annotations

import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import lmdb
import numpy as np
import pytest
import skimage.data

from restore.cli import main
from restore.data.io import read_array, write_image
from restore.data.lmdb import write_lmdb
from restore.data.sources import LmdbSource, open_source
from restore.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
SET5_HR = ROOT / "datasets" / "Set5" / "HR"
SET5_X2 = ROOT / "datasets" / "Set5" / "LR_bicubic" / "X2"
SET12 = ROOT / "datasets" / "Set12"


@pytest.fixture(scope="module")
def deep_folder(tmp_path_factory) -> Path:
    """16-bit PNGs and float .npy arrays made from real data (Set5, Middlebury disparity with inf holes)."""
    folder = tmp_path_factory.mktemp("deep")
    _, _, disparity = skimage.data.stereo_motorcycle()  # float32, inf where unknown
    write_image(folder / "disparity16.png", np.nan_to_num(disparity * 256, posinf=0).astype(np.uint16)[:, :, None])
    write_image(folder / "baby16.png", read_array(SET5_HR / "baby.png").astype(np.uint16) * 257)
    np.save(folder / "disparity.npy", disparity)
    np.save(folder / "bird_float.npy", read_array(SET5_HR / "bird.png").astype(np.float32) / 255)
    return folder


def assert_same_images(a, b):
    assert a.keys() == b.keys()
    for key in a.keys():
        x, y = a.read(key), b.read(key)
        assert x.dtype == y.dtype and x.shape == y.shape, key
        np.testing.assert_array_equal(x, y, err_msg=key)


@pytest.mark.parametrize("folder", ["set5", "set12", "deep"])
def test_folder_and_its_lmdb_give_identical_arrays_for_every_key(folder, deep_folder, tmp_path):
    src = {"set5": SET5_HR, "set12": SET12, "deep": deep_folder}[folder]
    report = write_lmdb(src, tmp_path / "out.lmdb", progress=False)
    source = open_source(src)
    assert (report.written, report.skipped, report.verified) == (len(source), 0, len(source))
    assert_same_images(open_source(tmp_path / "out.lmdb"), source)


def test_meta_info_lists_every_key_with_its_stored_format_and_shape(deep_folder, tmp_path):
    write_lmdb(deep_folder, tmp_path / "deep.lmdb", compress_level=3, progress=False)
    assert (tmp_path / "deep.lmdb" / "meta_info.txt").read_text().splitlines() == [
        "baby16.png (512,512,3) 3",
        "bird_float.npy (288,288,3) 0",
        "disparity.npy (500,741,1) 0",
        "disparity16.png (500,741,1) 3",
    ]


def test_lmdb_made_by_basicsr_is_read_by_lmdb_source(tmp_path):
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs

    for name, folder in (("set5", SET5_HR), ("set12", SET12)):
        files = sorted(p.name for p in folder.iterdir())
        out = str(tmp_path / f"{name}.lmdb")
        make_lmdb_from_imgs(str(folder), out, files, [Path(f).stem for f in files], batch=2)
        assert_same_images(open_source(out), open_source(folder))


def test_our_lmdb_is_read_by_basicsr_file_client(tmp_path):
    from basicsr.utils import FileClient, imfrombytes

    write_lmdb(SET5_HR, tmp_path / "set5.lmdb", progress=False)
    write_lmdb(SET12, tmp_path / "set12.lmdb", progress=False)
    client = FileClient("lmdb", db_paths=[str(tmp_path / "set5.lmdb"), str(tmp_path / "set12.lmdb")],
                        client_keys=["rgb", "gray"])
    for key in open_source(SET5_HR).keys():
        bgr = imfrombytes(client.get(key, "rgb"), flag="unchanged")
        np.testing.assert_array_equal(bgr[:, :, ::-1], read_array(SET5_HR / f"{key}.png"))
    for key in open_source(SET12).keys():
        gray = imfrombytes(client.get(key, "gray"), flag="unchanged")
        np.testing.assert_array_equal(gray, read_array(SET12 / f"{key}.png")[:, :, 0])


def test_basicsr_paired_dataset_trains_from_our_gt_and_lq_lmdbs(tmp_path):
    from basicsr.data.paired_image_dataset import PairedImageDataset

    lq_folder = tmp_path / "lq"  # BasicSR's paired LMDBs share keys: 'babyx2.png' becomes key 'baby'
    lq_folder.mkdir()
    for file in SET5_X2.iterdir():
        shutil.copy(file, lq_folder / file.name.replace("x2", ""))
    write_lmdb(SET5_HR, tmp_path / "gt.lmdb", progress=False)
    write_lmdb(lq_folder, tmp_path / "lq.lmdb", progress=False)
    dataset = PairedImageDataset({
        "dataroot_gt": str(tmp_path / "gt.lmdb"), "dataroot_lq": str(tmp_path / "lq.lmdb"),
        "io_backend": {"type": "lmdb"}, "phase": "val", "scale": 2,
    })
    assert len(dataset) == 5
    for sample in dataset:
        key = sample["gt_path"]
        gt = (sample["gt"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        lq = (sample["lq"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        np.testing.assert_array_equal(gt, read_array(SET5_HR / f"{key}.png"))
        np.testing.assert_array_equal(lq, read_array(SET5_X2 / f"{key}x2.png"))


def _many_images(folder: Path) -> Path:
    """~100 real images: Set12 and Set5 copies plus scikit-image's colour photographs."""
    folder.mkdir()
    for copy in range(6):
        for file in SET12.iterdir():
            shutil.copy(file, folder / f"set12_{copy}_{file.name}")
    for copy in range(3):
        for file in SET5_HR.iterdir():
            shutil.copy(file, folder / f"set5_{copy}_{file.name}")
    rgb = open_source("skimage:rgb")
    for key in rgb.keys():
        write_image(folder / f"{key}.png", rgb.read(key))
    return folder


def _committed_entries(path: Path) -> int:
    if not (path / "lock.mdb").exists():
        return 0
    with lmdb.open(str(path), readonly=True) as env:  # a locked reader: safe beside the writer
        return env.stat()["entries"]


@pytest.mark.slow
def test_writing_resumes_after_the_writer_is_killed(tmp_path):
    src, out = _many_images(tmp_path / "many"), tmp_path / "many.lmdb"
    total = len(open_source(src))
    # Level 9 and a commit per image make the writer slow (retina alone takes seconds), so it is
    # caught mid-run.
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        from restore.data.lmdb import write_lmdb
        write_lmdb({str(src)!r}, {str(out)!r}, compress_level=9, commit_every=1, verify=False, progress=False)
    """)])
    deadline = time.monotonic() + 120
    while _committed_entries(out) < 5 and writer.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    writer.send_signal(signal.SIGKILL)
    assert writer.wait() == -signal.SIGKILL, "the writer finished before it could be killed"
    committed = _committed_entries(out)
    assert 5 <= committed < total
    with pytest.raises(DataError, match="interrupted has none: rerun `restore data lmdb`"):
        open_source(out)  # no meta_info yet: an unfinished LMDB is never read in part

    report = write_lmdb(src, out, progress=False)  # level 1: the level only changes the size, not the pixels
    assert (report.skipped, report.written, report.verified) == (committed, total - committed, total)
    assert len((out / "meta_info.txt").read_text().splitlines()) == total
    assert_same_images(open_source(out), open_source(src))


def test_map_size_grows_when_the_map_is_full(tmp_path):
    initial = 64 * 1024
    report = write_lmdb(SET5_HR, tmp_path / "set5.lmdb", initial_map_size=initial, commit_every=2, progress=False)
    assert report.file_bytes > initial and report.map_size >= report.file_bytes
    assert report.map_size // initial in (2, 4, 8, 16, 32, 64)  # grown by doubling
    assert report.verified == 5


def test_a_corrupt_image_stops_writing_naming_it_and_fixing_it_resumes(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(SET5_HR, src)
    good = (src / "head.png").read_bytes()
    (src / "head.png").write_bytes(good[:1000])
    with pytest.raises(DataError, match=r"head\.png: cannot decode this image; the file is corrupt"):
        write_lmdb(src, tmp_path / "out.lmdb", commit_every=1, progress=False)
    assert not (tmp_path / "out.lmdb" / "meta_info.txt").exists()
    (src / "head.png").write_bytes(good)
    report = write_lmdb(src, tmp_path / "out.lmdb", commit_every=1, progress=False)
    assert (report.skipped, report.written, report.verified) == (3, 2, 5)  # baby, bird, butterfly were in


def test_verification_names_a_key_whose_source_changed(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(SET5_HR, src)
    write_lmdb(src, tmp_path / "out.lmdb", progress=False)
    write_image(src / "bird.png", read_array(src / "bird.png")[::-1])  # same size, other pixels
    with pytest.raises(DataError, match=r"out\.lmdb\[bird\] differs from .*bird\.png"):
        write_lmdb(src, tmp_path / "out.lmdb", progress=False)


def test_an_lmdb_written_from_another_source_is_not_mixed_into(tmp_path):
    write_lmdb(SET5_HR, tmp_path / "out.lmdb", progress=False, verify=False)
    with pytest.raises(DataError, match=r"already holds 5 key\(s\) that .*Set12 does not have \(baby, bird"):
        write_lmdb(SET12, tmp_path / "out.lmdb", progress=False)


def test_bad_destinations_are_refused(tmp_path):
    with pytest.raises(DataError, match=r"must end in \.lmdb"):
        write_lmdb(SET5_HR, tmp_path / "out", progress=False)
    (tmp_path / "busy.lmdb").mkdir()
    (tmp_path / "busy.lmdb" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match=r"busy\.lmdb: a non-empty folder that is not an LMDB"):
        write_lmdb(SET5_HR, tmp_path / "busy.lmdb", progress=False)


def test_skimage_photographs_write_to_an_lmdb_that_reads_back_identically(tmp_path):
    report = write_lmdb("skimage:gray", tmp_path / "gray.lmdb", progress=False)
    assert report.verified == len(open_source("skimage:gray"))
    assert_same_images(LmdbSource(tmp_path / "gray.lmdb"), open_source("skimage:gray"))


def test_cli_writes_resumes_and_summarises(tmp_path, capsys):
    out = str(tmp_path / "set5.lmdb")
    assert main(["data", "lmdb", str(SET5_HR), out, "--quiet"]) == 0
    assert "5 images (5 written, 0 already there, 5 verified)" in capsys.readouterr().out
    assert main(["data", "lmdb", str(SET5_HR), out, "--quiet", "--no-verify"]) == 0
    assert "5 images (0 written, 5 already there, not verified)" in capsys.readouterr().out
    assert_same_images(open_source(out), open_source(SET5_HR))


def test_cli_meta_info_file_takes_only_the_listed_images(tmp_path, capsys):
    meta = tmp_path / "meta_info.txt"
    meta.write_text("bird.png (288,288,3) 1\nwoman.png (344,228,3) 1\n")
    out = tmp_path / "two.lmdb"
    assert main(["data", "lmdb", str(SET5_HR), str(out), "--meta-info-file", str(meta), "--quiet"]) == 0
    assert open_source(out).keys() == ["bird", "woman"]


def test_cli_missing_source_is_one_paragraph_with_exit_status_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "restore.cli", "data", "lmdb", "datasets/DIV2K_missing", str(tmp_path / "x.lmdb")],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert result.returncode == 2
    assert result.stderr == "error: datasets/DIV2K_missing: no such folder or LMDB.\n"
    assert not (tmp_path / "x.lmdb").exists()


def test_cli_help_explains_the_layout_and_resuming(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "lmdb", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for phrase in ("meta_info.txt", "Resumable", "skimage:rgb", "--compress-level", "--no-verify", "--meta-info-file"):
        assert phrase in text


def test_png_encoding_keeps_16_bit_gray_exactly():
    disparity = skimage.data.stereo_motorcycle()[2]
    img = np.nan_to_num(disparity * 256, posinf=0).astype(np.uint16)
    from restore.data.lmdb import encode_value

    value = encode_value(img[:, :, None])
    assert value.startswith(b"\x89PNG")
    np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(value, np.uint8), cv2.IMREAD_UNCHANGED), img)


def _restore(*args: str, preexec_fn=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "restore", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn)


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    _, err = process.communicate(timeout=600)
    return process.returncode, " ".join(err.split())


@pytest.mark.slow
def test_a_truncated_lmdb_is_refused_by_test_train_and_data_lmdb_instead_of_a_sigbus(tmp_path, write_options):
    out = tmp_path / "set5.lmdb"
    write_lmdb(SET5_HR, out, progress=False, verify=False)
    data = out / "data.mdb"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])  # a copy cut short (disk full, killed rsync)
    options = write_options({
        "name": "truncated", "task": {"type": "sisr", "scale": 2},
        "network_g": {"type": "MSRResNet", "num_feat": 8, "num_block": 1},
        "datasets": {"train": {"dataroot_gt": str(out), "gt_size": 32, "batch_size_per_gpu": 2,
                               "num_worker_per_gpu": 0},
                     "test": {"name": "set5_lmdb", "dataroot_gt": str(out)}},
        "path": {"experiments_root": str(tmp_path / "experiments"), "results_root": str(tmp_path / "results")},
        "train": {"total_iter": 2, "optim_g": {"type": "Adam", "lr": 1e-4}, "pixel_opt": {"type": "L1Loss"}},
    })
    runs = {  # before the check, each of these died of SIGBUS (exit 135, no message)
        "test": _restore("test", "-opt", str(options), "--model", "baseline", "--out", str(tmp_path / "report")),
        "train": _restore("train", "-opt", str(options), "--no-progress"),
        "data lmdb": _restore("data", "lmdb", str(SET5_HR), str(out), "--quiet"),
    }
    for command, process in runs.items():
        code, err = _finish(process)
        assert code == 2, f"restore {command}: exit {code} ({err})"
        assert f"{data}: truncated or corrupt" in err and "rebuild it with `restore data lmdb`" in err, command
        assert "Traceback" not in err
    assert not (tmp_path / "report").exists()


def _tmpfs_available(mountpoint: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs '{mountpoint}'"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.slow
def test_a_full_disk_during_data_lmdb_says_so_and_leaves_a_resumable_lmdb(tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    if not _tmpfs_available(small):
        pytest.skip("cannot mount a small tmpfs here (needs unshare and mount rights); "
                    "test_a_file_size_limit_during_data_lmdb_is_named_and_resumable covers the write failure")
    out = small / "set12.lmdb"
    restore = f"'{sys.executable}' -m restore data lmdb '{SET12}' '{out}' --quiet"
    compare = (f"from restore.data.sources import open_source; a, b = open_source('{out}'), open_source('{SET12}'); "
               "import numpy as np; print('identical', all(np.array_equal(a.read(k), b.read(k)) for k in b.keys()))")
    # A private mount namespace: the 400 KiB file system exists only for this shell and its children.
    script = textwrap.dedent(f"""
        mount -t tmpfs -o size=400k tmpfs '{small}' || exit 99
        {restore} --commit-every 1 --no-verify; echo "first exit $?"
        mount -o remount,size=64m '{small}'
        {restore}; echo "second exit $?"
        '{sys.executable}' -c "{compare}"
    """)
    run = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=ROOT, capture_output=True, text=True,
                         timeout=900)
    log = " ".join((run.stdout + run.stderr).split())
    assert "first exit 2" in log, log
    assert f"{out}: disk full" in log and "run the same command again to finish" in log
    assert "Input/output error" not in log.split("disk full")[0] and "Traceback" not in log
    assert "second exit 0" in log and "already there" in log and "identical True" in log, log


@pytest.mark.slow
def test_a_file_size_limit_during_data_lmdb_is_named_and_resumable(tmp_path):
    out = tmp_path / "set12.lmdb"

    def limit_file_size() -> None:  # what `ulimit -f` does; the write then fails instead of killing
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (400 * 1024, 400 * 1024))

    code, err = _finish(_restore("data", "lmdb", str(SET12), str(out), "--commit-every", "1", "--no-verify",
                                 "--quiet", preexec_fn=limit_file_size))
    assert code == 2 and f"{out}: the file size limit (409,600 bytes, `ulimit -f`) was reached" in err, err
    assert "run the same command again to finish" in err and "Traceback" not in err
    committed = _committed_entries(out)
    assert 0 < committed < len(open_source(SET12))
    report = write_lmdb(SET12, out, progress=False)
    assert report.skipped == committed and report.verified == len(open_source(SET12))
    assert_same_images(open_source(out), open_source(SET12))
