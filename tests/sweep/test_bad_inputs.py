"""Bad spec files through `backdoor-sweep run`, in-process: one line, exit 2, nothing written.

Each entry of `BAD_SPECS` is a file an adversarial or careless user could hand the CLI; the store
folder named on the command line must not exist afterwards (not even a lock file).
"""

from __future__ import annotations

import signal
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from backdoor_sweep import cli
from sweep import validation
from sweep.spec import parse_spec
from sweep.store import Store
from tests.sweep.test_spec_file import BILLION_LAUGHS

HEAD = textwrap.dedent("""\
    name: t
    dataset: {name: digits, classes: [7, 1]}
    learner: {name: svm_rbf}
    attack: {trigger: patch, poisoning: dirty_label, target: 1}
    """)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """`backdoor-sweep ARGS` in this process: (exit code, stdout, stderr)."""
    argv, handler = sys.argv, signal.getsignal(signal.SIGTERM)
    sys.argv = ["backdoor-sweep", *args]
    try:
        cli.main()
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    finally:
        sys.argv = argv
        signal.signal(signal.SIGTERM, handler)
    out = capsys.readouterr()
    return code, out.out, out.err


def pattern_file(tmp_path: Path) -> str:
    path = tmp_path / "pattern.png"
    path.write_text("plain text with an image's name\n")
    return str(path)


#: id -> (file contents, a function of tmp_path giving them, or bytes), words the line must hold
BAD_SPECS = {
    "billion_laughs": (BILLION_LAUGHS, "values (an alias counts all it names"),
    "deep_nesting": ("name: " + "[" * 5000 + "]" * 5000 + "\n", "levels deep"),
    "repeated_key": (HEAD + "name: u\n", "key 'name' must appear once per mapping"),
    "non_utf8": (b"name: t\n\xe9t\xe9\n", "must be UTF-8 text; got byte 0xe9"),
    "repeated_grid_value": (HEAD + "grid: {C: [1, 1.0]}\n", "grid.C must not repeat a value"),
    "negative_seed": (HEAD + "seeds: [0, -3]\n", "seeds.1 must be greater than or equal to 0"),
    "negative_split_seed": (
        HEAD.replace("classes: [7, 1]", "classes: [7, 1], split_seed: -1"),
        "dataset.split_seed must be greater than or equal to 0; got -1",
    ),
    "pattern_image_not_an_image": (
        lambda tmp: HEAD.replace(
            "trigger: patch", f"trigger: blend, pattern: image, pattern_image: {pattern_file(tmp)}"
        ),
        "attack.pattern_image must be an image file Pillow can read",
    ),
    "resnet18_cnn_width": (
        HEAD.replace("{name: svm_rbf}", "{name: resnet18, cnn_width: 8}"),
        "learner.cnn_width is not read by the chosen learner resnet18, which reads epochs",
    ),
    "too_many_results": (
        HEAD
        + "grid:\n"
        + "".join(
            # each value as YAML writes it (1e-9 as 1.0e-09: str() gives 1e-09, which YAML reads as text)
            f"  {k}: [{', '.join(yaml.safe_dump(v).splitlines()[0] for v in vs)}]\n"
            for k, vs in {
                "C": [0.001, 0.01, 0.1, 1, 10, 100, 1000, 10000, 100000, 1000000],
                "gamma": [0.001, 0.01, 0.1, 1, 10, 100, 1000, 10000, 100000, 1000000],
                "tol": [1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1],
                "poison_rate": [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
                "trigger_size": [1, 2, 3, 4, 5],
                "corner": ["bottom_right", "bottom_left", "top_right", "top_left"],
            }.items()
        )
        + f"seeds: [{', '.join(map(str, range(5000)))}]\n",
        "at most 100,000 results (pass --force to run more); got 1,000,000,000",
    ),
    "long_value": (HEAD.replace("target: 1", "target: " + "q" * 50_000), "…"),
}

#: booleans (YAML's yes/no, on/off, true/false) and text where a number is meant: pydantic's lax
#: mode would read them as 1, 0 or the number, and a grid value is stored as written
BOOL = "not true/false (YAML reads yes/no, on/off and true/false as booleans); got"
SEARCHED = "search: {algorithm: random, num_samples: 2}\n"
SCREEN = "grid: {C: [1, 10], poison_rate: [0, 0.1], trigger_size: [1, 2]}\n"
BAD_SPECS.update(
    {
        "boolean_grid_value": (
            HEAD + "grid: {C: [yes]}\n",
            f"grid.C must be a number, {BOOL} True",
        ),
        "boolean_poison_rate": (
            HEAD + "grid: {poison_rate: [0.1, true]}\n",
            f"grid.poison_rate must be a number, {BOOL} True",
        ),
        "boolean_trigger_size": (
            HEAD + "grid: {trigger_size: [false]}\n",
            f"grid.trigger_size must be an integer, {BOOL} False",
        ),
        "boolean_fixed_value": (
            HEAD.replace("{name: svm_rbf}", "{name: svm_rbf, C: on}"),
            f"learner.C must be a number, {BOOL} True",
        ),
        "exponent_as_text": (
            HEAD + "grid: {C: [1e3]}\n",
            "grid.C must be a number, not text (YAML reads 1e3 as text: write 1.0e+3); got '1e3'",
        ),
        "quoted_number": (
            HEAD + "grid: {trigger_size: ['2']}\n",
            "grid.trigger_size must be an integer, not text (write it without quotes); got '2'",
        ),
        "boolean_seed": (HEAD + "seeds: [0, true]\n", f"seeds.1 must be an integer, {BOOL} True"),
        "text_seed": (HEAD + "seeds: ['3']\n", "seeds.0 must be an integer, not text"),
        "boolean_split_seed": (
            HEAD.replace("classes: [7, 1]", "classes: [7, 1], split_seed: yes"),
            f"dataset.split_seed must be an integer, {BOOL} True",
        ),
        "boolean_target": (
            HEAD.replace("target: 1", "target: yes"),
            "attack.target must be one of the classes [7, 1]; got True",
        ),
        "boolean_range_bound": (
            HEAD + "grid: {C: {loguniform: [true, 10]}}\n" + SEARCHED,
            "grid.C.loguniform must be two numbers [low, high]; got [True, 10]",
        ),
        "boolean_num_samples": (
            HEAD + "grid: {C: {loguniform: [0.1, 10]}}\n"
            "search: {algorithm: random, num_samples: yes}\n",
            f"search.num_samples must be an integer, {BOOL} True",
        ),
        "text_max_concurrent": (
            HEAD + "grid: {C: {loguniform: [0.1, 10]}}\n"
            "search: {algorithm: random, num_samples: 2, max_concurrent: '2'}\n",
            "search.max_concurrent must be an integer, not text (write it without quotes)",
        ),
        "boolean_search_seed": (
            HEAD + "grid: {C: {loguniform: [0.1, 10]}}\n"
            "search: {algorithm: random, num_samples: 2, seed: true}\n",
            f"search.seed must be an integer, {BOOL} True",
        ),
        "boolean_keep": (
            HEAD + SCREEN + "search: {strategy: slope_screen, keep: on}\n",
            f"search.keep must be an integer, {BOOL} True",
        ),
        "boolean_clean_tolerance": (
            HEAD + SCREEN + "search: {strategy: slope_screen, clean_tolerance: no}\n",
            f"search.clean_tolerance must be a number, {BOOL} False",
        ),
        "boolean_probe": (
            HEAD + SCREEN + "search: {strategy: slope_screen, probe: {trigger_size: true}}\n",
            "search.probe.trigger_size must be one of the grid's values [1, 2]; got True",
        ),
        "boolean_max_failures": (
            HEAD + "execution: {max_failures: yes}\n",
            f"execution.max_failures must be an integer, {BOOL} True",
        ),
        "text_cpus_per_trial": (
            HEAD + "execution: {cpus_per_trial: '2'}\n",
            "execution.cpus_per_trial must be a number, not text (write it without quotes)",
        ),
        "boolean_max_concurrent_trials": (
            HEAD + "execution: {max_concurrent_trials: true}\n",
            f"execution.max_concurrent_trials must be an integer, {BOOL} True",
        ),
        "boolean_beta": (
            HEAD + "curves: {enabled: true, betas: [0, on]}\n",
            f"curves.betas.1 must be a number, {BOOL} True",
        ),
        "boolean_influence_k": (
            HEAD + "explain: {influence_k: yes}\n",
            f"explain.influence_k must be an integer, {BOOL} True",
        ),
    }
)

#: a network sweep under ASHA (a scheduler's trial is one result) whose learning rate is a range
SCHEDULED = textwrap.dedent("""\
    name: t
    dataset: {name: digits, classes: [7, 1]}
    learner: {name: cnn, epochs: 2, cnn_width: 4}
    attack: {trigger: patch, poisoning: dirty_label, target: 1}
    execution: {scheduler: {name: asha, grace_period: 1}}
    grid: {lr: {loguniform: [0.001, 0.1]}, poison_rate: [0.05, 0.1]}
    seeds: [0, 1]
    """)
#: a search scores a configuration against every attack setting and seed in one trial
NOT_SCHEDULED = (
    "with execution.scheduler asha (a search's trial is one configuration against every attack "
    "setting and seed, a scheduler's trial one result)"
)
BAD_SPECS.update(
    {
        "optuna_with_scheduler": (
            SCHEDULED + "search: {algorithm: optuna, num_samples: 2, "
            "objectives: [{metric: clean_acc, mode: max}]}\n",
            f"search.algorithm must be grid {NOT_SCHEDULED}; got optuna",
        ),
        "random_with_scheduler": (
            SCHEDULED + "search: {algorithm: random, num_samples: 2}\n",
            f"search.algorithm must be grid {NOT_SCHEDULED}; got random",
        ),
    }
)


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_spec_gives_one_line_exit_2_and_writes_nothing(tmp_path, capsys, case):
    text, needle = BAD_SPECS[case]
    text = text(tmp_path) if callable(text) else text
    path = tmp_path / "spec.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    store = tmp_path / "store"
    code, out, err = run_cli(capsys, "run", str(path), "--store", str(store), "--quiet")
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert needle in lines[0], lines[0]
    assert len(lines[0]) < 400, lines[0]
    assert not store.exists()


def test_force_lifts_only_the_result_limit(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(validation, "MAX_RESULTS", 1)
    path = tmp_path / "spec.yaml"
    path.write_text(HEAD + "grid: {C: [1, 10]}\n")
    store = tmp_path / "store"
    code, _, err = run_cli(capsys, "run", str(path), "--store", str(store), "--quiet")
    assert code == 2 and "at most 1 results (pass --force to run more); got 2 = 2 C × 1 seed" in err
    assert not store.exists()
    # with --force the limit is gone and the next check speaks: a stored sweep of this name
    # was started with C = 1 only, so resuming with this spec is refused
    started = parse_spec(yaml.safe_load(HEAD))
    Store(store).write_meta("t", {"name": "t", "spec": started.model_dump(mode="json")})
    args = ("run", str(path), "--store", str(store), "--quiet", "--force", "--resume")
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and "results" not in err and "differs in grid" in err, err
