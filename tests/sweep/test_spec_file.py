"""Reading spec files an attacker or a slip of the keyboard wrote: one line each, bounded work.

Each bad file is refused with one `SweepError` line naming the file and what is wrong; none
builds its whole value (the billion laughs below stands for 10⁹ strings in 342 bytes).
"""

from __future__ import annotations

import textwrap
import tracemalloc
from pathlib import Path

import pytest

from backdoor_sweep.errors import SweepError
from sweep import specfile
from sweep.spec import load_spec
from sweep.specfile import MAX_DEPTH, MAX_NODES, MAX_SPEC_BYTES, read_spec_file

HEAD = textwrap.dedent("""\
    name: t
    dataset: {name: digits, classes: [7, 1]}
    learner: {name: svm_linear}
    attack: {trigger: patch, poisoning: dirty_label, target: 1}
    """)

#: the classic billion laughs: 9 levels of 9 aliases, 9⁹ ≈ 3.9·10⁸ strings
BILLION_LAUGHS = "".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n',
        *(
            f"{n}: &{n} [{','.join([f'*{p}'] * 9)}]\n"
            for p, n in zip("abcdefgh", "bcdefghi", strict=True)
        ),
    ]
)


def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and msg, msg
    return msg


def write(tmp_path: Path, text: str | bytes, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_billion_laughs_is_refused_without_expanding(tmp_path):
    path = write(tmp_path, BILLION_LAUGHS)
    assert path.stat().st_size == 342
    tracemalloc.start()
    try:
        with pytest.raises(SweepError) as err:
            load_spec(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    msg = one_line(err)
    assert f"at most {MAX_NODES:,} values" in msg and "spec.yaml" in msg
    assert len(msg) < 300
    assert peak < 20 * 2**20  # a few MB, not the gigabytes of the expanded value


def test_aliases_within_the_limit_still_work(tmp_path):
    text = HEAD.replace("svm_linear", "svm_rbf") + "grid:\n  C: &cs [0.1, 1.0]\n  gamma: *cs\n"
    spec = load_spec(write(tmp_path, text))
    assert spec.grid["gamma"] == [0.1, 1.0]


def test_alias_inside_its_own_value_is_refused(tmp_path):
    with pytest.raises(SweepError, match="alias must not be used inside the value it names") as err:
        read_spec_file(write(tmp_path, "a: &x [1, *x]\n"))
    one_line(err)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100_000])
def test_deep_nesting_is_refused_where_it_happens(tmp_path, depth):
    path = write(tmp_path, "name: " + "[" * depth + "]" * depth + "\n")
    with pytest.raises(SweepError) as err:
        load_spec(path)
    msg = one_line(err)
    assert f"at most {MAX_DEPTH} levels" in msg and "line 1" in msg


def test_nesting_at_the_limit_reads(tmp_path):
    depth = MAX_DEPTH - 1  # the document's mapping is the first level
    value = read_spec_file(write(tmp_path, "x: " + "[" * depth + "]" * depth + "\n"))["x"]
    levels = 0
    while value:
        value, levels = value[0], levels + 1
    assert value == [] and levels == depth - 1


@pytest.mark.parametrize(
    ("text", "key", "line", "first"),
    [
        ("name: t\nname: u\n", "'name'", 2, 1),
        ("grid:\n  C: [1]\n  gamma: [1]\n  C: [2]\n", "'C'", 4, 2),
        ("learner: {name: svm_linear, C: 1, C: 2}\n", "'C'", 1, 1),
    ],
)
def test_repeated_keys_are_refused_naming_key_and_lines(tmp_path, text, key, line, first):
    with pytest.raises(SweepError) as err:
        load_spec(write(tmp_path, text))
    msg = one_line(err)
    assert f"at line {line}," in msg
    assert f"key {key} must appear once per mapping; it is also at line {first}" in msg


def test_merge_keys_may_override(tmp_path):
    text = "base: &b {C: 1, tol: 0.1}\nlearner:\n  <<: *b\n  C: 2\n"
    assert read_spec_file(write(tmp_path, text))["learner"] == {"C": 2, "tol": 0.1}


def test_non_utf8_file(tmp_path):
    path = write(tmp_path, b"name: t\n\xff\xfe\x00garbage\n")
    with pytest.raises(SweepError) as err:
        load_spec(path)
    assert one_line(err).endswith("must be UTF-8 text; got byte 0xff at offset 8")


def test_a_binary_file(tmp_path):
    path = write(tmp_path, bytes(range(256)) * 4)
    with pytest.raises(SweepError) as err:
        load_spec(path)
    assert "must be UTF-8 text" in one_line(err) or "not valid YAML" in one_line(err)


def test_unreadable_file(tmp_path, monkeypatch):
    path = write(tmp_path, HEAD)

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", refuse)  # tests may run as root, where chmod 000 reads
    with pytest.raises(SweepError) as err:
        load_spec(path)
    assert one_line(err).endswith("must be readable; got Permission denied")


def test_a_folder_is_not_a_spec_file(tmp_path):
    with pytest.raises(SweepError) as err:
        load_spec(tmp_path)
    assert one_line(err).endswith("(a folder)")


def test_a_huge_file_is_refused_unread(tmp_path):
    path = write(tmp_path, HEAD + "# " + "x" * MAX_SPEC_BYTES + "\n")
    with pytest.raises(SweepError) as err:
        load_spec(path)
    assert f"must be at most {MAX_SPEC_BYTES:,} bytes" in one_line(err)


def test_many_values_without_aliases_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(specfile, "MAX_NODES", 500)  # the same code as 100 000, 200 times faster
    path = write(tmp_path, HEAD + "grid:\n  C: [" + ", ".join(["1"] * 500) + "]\n")
    with pytest.raises(SweepError) as err:
        load_spec(path)
    assert "at most 500 values" in one_line(err)


def test_a_long_value_is_cut_in_the_message(tmp_path):
    path = write(tmp_path, HEAD.replace("name: t", "name: '" + "x" * 100_000 + "!'"))
    with pytest.raises(SweepError) as err:
        load_spec(path)
    msg = one_line(err)
    assert msg.startswith("name must match pattern '^[A-Za-z0-9]")
    assert "…" in msg and len(msg) < 200


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("- just\n- a list\n", "must be a YAML mapping"),
        ("", "must be a YAML mapping"),
        ("name: !!python/object:os.system x\n", "not valid YAML"),
        ("name: t\n\x00\n", "not valid YAML"),
        ("? [a, b]\n: 1\n", "not valid YAML"),
    ],
)
def test_other_malformed_files(tmp_path, text, needle):
    with pytest.raises(SweepError) as err:
        load_spec(write(tmp_path, text))
    assert needle in one_line(err)
