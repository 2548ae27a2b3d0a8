"""One declaration per learner hyperparameter: the ``Params`` model is the constructor.

Every learner keeps the scikit-learn contract (``__init__`` stores keyword hyperparameters,
``get_params``/``set_params``/``clone`` round-trip), takes exactly its own parameters, and a spec
giving a learner another learner's parameter is refused in one line naming what it reads.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from pydantic import BaseModel
from sklearn.base import clone

from backdoor_sweep.errors import SweepError
from sweep.spec import parse_spec
from trainables.components import Hyperparameters, Params, hyperparameter_init
from trainables.learners import LEARNERS, Learner, SVMRBFParams, make_learner

NAMES = sorted(LEARNERS)


def non_default(field, default):
    """A valid value different from ``default`` for each kind of field the learners use."""
    if isinstance(default, bool):
        return not default
    if isinstance(default, int):
        return default + 1
    if isinstance(default, float):
        return default * 0.5 if default else 0.25
    if isinstance(default, str):
        args = getattr(field.annotation, "__args__", ())
        return next(a for a in args if a != default)
    raise AssertionError(f"no test value for {field}")


@pytest.mark.parametrize("name", NAMES)
def test_constructor_is_the_params_model_plus_extras(name):
    cls = LEARNERS[name].estimator()
    sig = inspect.signature(cls.__init__)
    declared = {**cls.Params.model_fields}
    expected = [*declared, *cls.init_extras]
    assert [p for p in sig.parameters if p != "self"] == expected
    for key, field in declared.items():
        assert sig.parameters[key].default == field.default, key
    assert cls().get_params() == {
        **{k: f.default for k, f in declared.items()},
        **cls.init_extras,
    }


@pytest.mark.parametrize("name", NAMES)
def test_clone_keeps_every_hyperparameter(name):
    cls = LEARNERS[name].estimator()
    values = {k: non_default(f, f.default) for k, f in cls.Params.model_fields.items()}
    cls.Params(**values)  # the test values are valid for the model
    est = cls(**values, random_state=7)
    copy = clone(est)
    assert copy is not est and type(copy) is cls
    assert copy.get_params() == est.get_params()
    assert {k: getattr(copy, k) for k in values} == values
    copy.set_params(random_state=8)
    assert copy.random_state == 8 and est.random_state == 7


@pytest.mark.parametrize("name", NAMES)
def test_init_only_stores(name):
    """No validation in ``__init__`` (scikit-learn's rule): a bad value is the spec's to refuse."""
    cls = LEARNERS[name].estimator()
    key = next(iter(cls.Params.model_fields))
    assert getattr(cls(**{key: "anything"}), key) == "anything"


def test_a_network_takes_only_its_own_parameters():
    resnet, cnn = LEARNERS["resnet18"].estimator(), LEARNERS["cnn"].estimator()
    assert cnn(cnn_width=8).cnn_width == 8
    with pytest.raises(TypeError, match="cnn_width"):
        resnet(cnn_width=8)
    with pytest.raises(ValueError, match="cnn_width"):
        resnet().set_params(cnn_width=8)
    with pytest.raises(TypeError, match="hidden_layers"):
        cnn(hidden_layers=2)
    with pytest.raises(TypeError, match="gamma"):
        LEARNERS["svm_linear"].estimator()(gamma=0.1)


def test_spec_refuses_another_networks_parameter_naming_what_it_reads():
    raw = {
        "name": "t",
        "dataset": {"name": "digits", "classes": [7, 1]},
        "learner": {"name": "resnet18", "cnn_width": 8},
        "attack": {"trigger": "patch", "poisoning": "dirty_label", "target": 1},
    }
    with pytest.raises(SweepError) as err:
        parse_spec(raw)
    msg = str(err.value)
    assert msg.startswith(
        "learner.cnn_width is not read by the chosen learner resnet18, which reads "
    )
    assert "epochs" in msg and "batch_size" in msg and "cnn_width, " not in msg
    assert msg.endswith("; got 8") and "\n" not in msg
    raw["learner"] = {"name": "cnn", "cnn_width": 8}
    assert parse_spec(raw).learner.name == "cnn"


def test_subclass_inherits_and_a_new_params_model_regenerates():
    class Base(Hyperparameters):
        class Params(Params):
            a: int = 1

    class Child(Base):
        pass

    class Other(Base):
        class Params(Params):
            b: float = 2.0

        init_extras = {"seed": None}

    assert Child(a=3).a == 3
    assert list(inspect.signature(Other.__init__).parameters) == ["self", "b", "seed"]
    with pytest.raises(TypeError, match="'a'"):
        Other(a=1)


def test_hyperparameter_init_refuses_what_cannot_be_a_hyperparameter():
    class Required(BaseModel):
        x: int

    with pytest.raises(TypeError, match="needs a default"):
        hyperparameter_init(Required)

    class Clash(Params):
        random_state: int = 0

    with pytest.raises(TypeError, match="already declares random_state"):
        hyperparameter_init(Clash, random_state=None)


@pytest.mark.parametrize("name", ["svm_linear", "logistic", "torch_logistic"])
def test_a_clone_fits_like_the_original(name, digits_data):
    extra = {"epochs": 2} if LEARNERS[name].kind == "torch" else {}
    est = LEARNERS[name].estimator()(random_state=0, **extra)
    X, y = digits_data.X_train[:60], digits_data.y_train[:60]
    a = est.fit(X, y).predict(digits_data.X_test)
    b = clone(est).fit(X, y).predict(digits_data.X_test)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_the_declaration_is_the_estimators(name):
    """The registry's name, kind and ``Params`` are the estimator class's own (one declaration)."""
    learner = LEARNERS[name]
    cls = learner.estimator()
    assert (cls.name, cls.kind, cls.Params) == (learner.name, learner.kind, learner.Params)
    assert type(make_learner({"learner": name})) is cls


def test_a_declaration_that_names_another_estimator_is_refused():
    wrong = Learner(
        "svm_linear", "sklearn", SVMRBFParams, "trainables.learners.sklearn_learners", "SVMLinear"
    )
    with pytest.raises(TypeError, match="not learner 'svm_linear' \\(sklearn\\) with SVMRBFParams"):
        wrong.estimator()
