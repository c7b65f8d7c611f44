"""The simulator's worker processes change nothing: byte-identical files whatever ``jobs`` is."""
import hashlib

import pytest

from carecall_eval.errors import InputError
from carecall_eval.simulate import simulate


def _hashes(d):
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(d.iterdir()) if f.is_file()}


def test_jobs_give_byte_identical_files(tmp_path):
    # three chunks of 700 customers: the workers run ahead of the writer and come back in chunk order
    one = simulate(tmp_path / "one", customers=2000, seed=11, chunk_size=700, jobs=1)
    two = simulate(tmp_path / "two", customers=2000, seed=11, chunk_size=700, jobs=2)
    assert one == two
    assert _hashes(tmp_path / "one") == _hashes(tmp_path / "two")
    assert len(_hashes(tmp_path / "one")) >= 10


@pytest.mark.parametrize("jobs", [0, -1, 1.5, True])
def test_bad_jobs_is_a_named_error(tmp_path, jobs):
    with pytest.raises(InputError, match="jobs must be a whole number"):
        simulate(tmp_path / "x", customers=10, jobs=jobs)
    assert not (tmp_path / "x").exists()
